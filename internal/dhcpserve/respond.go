package dhcpserve

import (
	"bytes"
	"fmt"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Reply is the answer to one request: the message (nil: no answer) and
// where it goes.
type Reply struct {
	Msg    *dhcpv4.DHCPv4
	DstMAC net.HardwareAddr
	DstIP  net.IP
	Note   string // for the log: the client state, or why there is no answer
}

// silence is a reply that sends nothing, for the reason given.
func silence(format string, args ...any) (*Reply, error) {
	return &Reply{Note: fmt.Sprintf(format, args...)}, nil
}

// Respond decides the answer to req under cfg (checked by Check): an
// answer for another link than the tap's own (ipvtap's DHCP proxy) uses
// it without a Server.
func Respond(cfg *Config, req *dhcpv4.DHCPv4) (*Reply, error) { return respond(cfg, req) }

// respond decides the answer to req under cfg (validated by New).
func respond(cfg *Config, req *dhcpv4.DHCPv4) (*Reply, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return silence("%s is not a request", req.MessageType())
	}
	if req.HWType != iana.HWTypeEthernet || !bytes.Equal(req.ClientHWAddr, cfg.ClientMAC) {
		return silence("%s from %s, not the guest %s", req.MessageType(), req.ClientHWAddr, cfg.ClientMAC)
	}
	if req.GatewayIPAddr != nil && !req.GatewayIPAddr.IsUnspecified() {
		return silence("%s relayed by %s: this responder serves its own link only", req.MessageType(), req.GatewayIPAddr)
	}
	l := &cfg.Lease
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return build(cfg, req, dhcpv4.MessageTypeOffer, l.IP, "discover")
	case dhcpv4.MessageTypeRequest:
		return respondRequest(cfg, req)
	case dhcpv4.MessageTypeInform:
		return build(cfg, req, dhcpv4.MessageTypeAck, nil, "inform")
	case dhcpv4.MessageTypeRelease:
		return silence("guest released %s", req.ClientIPAddr)
	case dhcpv4.MessageTypeDecline:
		return silence("guest declined %s (is the address in use on its link?)", req.RequestedIPAddress())
	default:
		return silence("ignoring %s", req.MessageType())
	}
}

// respondRequest answers a DHCPREQUEST in each client state of RFC 2131
// section 4.3.2.
func respondRequest(cfg *Config, req *dhcpv4.DHCPv4) (*Reply, error) {
	l := &cfg.Lease
	sid := req.ServerIdentifier()
	asked := req.RequestedIPAddress()
	var state string
	switch {
	case sid != nil:
		if !sid.Equal(l.ServerID) {
			return silence("guest chose server %s", sid)
		}
		state = "selecting"
	case asked != nil:
		state = "init-reboot"
	case req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified():
		asked = req.ClientIPAddr
		state = "renewing/rebinding"
	default:
		return build(cfg, req, dhcpv4.MessageTypeNak, nil, "request names no address")
	}
	if !asked.Equal(l.IP) {
		return build(cfg, req, dhcpv4.MessageTypeNak, nil, fmt.Sprintf("%s for %s, but the lease is %s", state, asked, l.IP))
	}
	return build(cfg, req, dhcpv4.MessageTypeAck, l.IP, state)
}

// build makes an OFFER, ACK or NAK for req and chooses its destination.
// yiaddr is nil for a NAK and for the ACK to an INFORM; a NAK carries note
// as its message (option 56).
func build(cfg *Config, req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yiaddr net.IP, note string) (*Reply, error) {
	l := &cfg.Lease
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.ServerID)),
	}
	if typ == dhcpv4.MessageTypeNak {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptMessage(note)))
	} else {
		mods = append(mods, leaseOptions(l, yiaddr != nil)...)
		if yiaddr != nil {
			mods = append(mods, dhcpv4.WithYourIP(yiaddr))
		}
		if typ == dhcpv4.MessageTypeAck {
			mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
		}
	}
	// NewReplyFromRequest copies xid, chaddr, flags and the client
	// identifier (RFC 6842).
	msg, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", typ, err)
	}
	r := &Reply{Msg: msg, Note: note}
	r.DstMAC, r.DstIP = destination(req, msg)
	return r, nil
}

// leaseOptions returns the options describing the lease. An INFORM answer
// (withTimes false) carries no lease times (RFC 2131 section 4.3.5).
func leaseOptions(l *Lease, withTimes bool) []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{dhcpv4.WithNetmask(l.Mask)}
	if withTimes {
		m = append(m,
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(l.LeaseTime)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(l.LeaseTime/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(l.LeaseTime*7/8)),
		)
	}
	if l.Router != nil {
		m = append(m, dhcpv4.WithRouter(l.Router))
	}
	if len(l.DNS) > 0 {
		m = append(m, dhcpv4.WithDNS(l.DNS...))
	}
	if l.Domain != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptDomainName(l.Domain)))
	}
	if l.MTU > 0 {
		m = append(m, dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(l.MTU >> 8), byte(l.MTU)}))
	}
	if len(l.Routes) > 0 {
		rs := make([]*dhcpv4.Route, len(l.Routes))
		for i, r := range l.Routes {
			rs[i] = &dhcpv4.Route{Dest: r.Dest, Router: r.Router}
		}
		m = append(m, dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(rs...)))
	}
	return m
}

// destination applies RFC 2131 section 4.1 for a client on the link (no
// relay): a NAK is broadcast; a client that has an address (ciaddr) gets a
// unicast to it; one that asked for broadcast, or a reply with no address
// to send to, is broadcast; otherwise the reply is unicast to chaddr and
// yiaddr (a layer-2 socket needs no ARP entry for that).
func destination(req, resp *dhcpv4.DHCPv4) (net.HardwareAddr, net.IP) {
	bcastMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	switch {
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		return bcastMAC, net.IPv4bcast
	case req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified():
		return req.ClientHWAddr, req.ClientIPAddr
	case req.IsBroadcast() || resp.YourIPAddr == nil || resp.YourIPAddr.IsUnspecified():
		return bcastMAC, net.IPv4bcast
	default:
		return req.ClientHWAddr, resp.YourIPAddr
	}
}
