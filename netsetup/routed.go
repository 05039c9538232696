package netsetup

import (
	"fmt"
	"net"
	"strings"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/routed"
)

// RoutedGateway is vmrun's end of a routed guest's tap (169.254.0.1/32 on
// the tap): the guest's gateway in routed mode, always (routed.Gateway;
// routed.GatewayV6 is its IPv6 link-local twin).
const RoutedGateway = routed.Gateway

// GuestAddrSource says where a routed guest's address comes from.
type GuestAddrSource string

// The sources of a routed guest's address.
const (
	// GuestAddrStatic is the address given with --guest-ip; vmrun takes
	// no lease for it.
	GuestAddrStatic GuestAddrSource = "static"
	// GuestAddrUpstream is an address vmrun leases from the uplink's DHCP
	// server on the guest's behalf (client identifier vmrun-NAME), keeps
	// renewed while the VM runs and releases when it stops.
	GuestAddrUpstream GuestAddrSource = "upstream-dhcp"
)

// forceRouted handles --net routed[:IF]: a plain tap, the guest's address
// routed to it and answered for on IF by proxy ARP.
func forceRouted(f Facts, r Request) (choice, error) {
	dev := f.Uplink
	switch {
	case !f.Named && f.Kind == UplinkNone:
		return choice{}, hostnet.Refuse(ErrNoUplink, "--net routed: there is no default route to route the guest through; name the uplink with --net routed:IF")
	case !f.Exists:
		return choice{}, hostnet.Refuse(ErrNoInterface, "interface %s does not exist; choose another with --net routed:IF", dev)
	case f.Kind == UplinkBridgePort:
		return choice{}, hostnet.Refuse(ErrUnsuitable, "%s is a port of bridge %s, and the bridge, not its port, is where the LAN reaches this host; use --net routed:%s", dev, f.Master, f.Master)
	case f.Kind == UplinkOther:
		return choice{}, hostnet.Refuse(ErrUnsuitable, "%s is not an Ethernet device (%s), and routed mode answers ARP for the guest on it; choose an Ethernet or Wi-Fi interface with --net routed:IF", dev, linkTypeOr(f.LinkType))
	case !f.Up:
		return choice{}, hostnet.Refuse(ErrLinkDown, "%s is down; bring it up (ip link set %s up) or choose another with --net routed:IF", dev, dev)
	}
	if err := needCaps(f.Caps, Routed); err != nil {
		return choice{}, err
	}
	if !f.Caps.Tun {
		return choice{}, refuseTun("routed", f.Caps)
	}
	if r.Gateway != nil {
		return choice{}, hostnet.Refuse(ErrBadRequest, "--gateway has no meaning with --net routed: the guest's gateway is always %s, vmrun's end of its tap; drop --gateway", RoutedGateway)
	}
	nets := ipv4Nets(f)
	if len(nets) == 0 {
		return choice{}, hostnet.Refuse(ErrNoAddress, "%s has no IPv4 address, so there is no LAN to route the guest into; wait until %s is configured, or choose another interface with --net routed:IF", dev, dev)
	}
	c := choice{mode: Routed, parent: dev, mtu: f.MTU}
	if r.GuestIP == nil {
		c.reason = fmt.Sprintf("a tap routed to %s with proxy ARP, as asked (--net routed): vmrun leases the guest an address from %s's DHCP server and answers for it, so the LAN sees only this host's MAC", dev, dev)
		return c, nil
	}
	notice, err := checkRoutedGuestIP(r.GuestIP.IP, dev, nets)
	if err != nil {
		return choice{}, err
	}
	c.reason = fmt.Sprintf("a tap routed to %s with proxy ARP, as asked (--net routed): the guest uses %s (--guest-ip) and the LAN sees only this host's MAC", dev, r.GuestIP.IP)
	c.notice = notice
	return c, nil
}

// checkRoutedPlan refuses a routed plan whose guest address is unusable.
func checkRoutedPlan(p Plan) error {
	switch p.GuestAddr {
	case GuestAddrStatic:
		if ip := p.GuestIP.To4(); ip == nil || !ip.IsGlobalUnicast() {
			return hostnet.Refuse(ErrBadRequest, "the routed plan's guest address %q is not a unicast IPv4 address", p.GuestIP)
		}
	case GuestAddrUpstream:
	default:
		return hostnet.Refuse(ErrBadRequest, "the routed plan does not say where the guest's address comes from (%q)", p.GuestAddr)
	}
	return nil
}

// checkRoutedGuestIP refuses a --guest-ip a routed guest cannot use on the
// LAN of dev (whose IPv4 networks are nets), and returns a notice when the
// address is outside them: proxy ARP then answers nobody.
func checkRoutedGuestIP(ip net.IP, dev string, nets []*net.IPNet) (string, error) {
	ip4 := ip.To4()
	switch {
	case ip4 == nil:
		return "", hostnet.Refuse(ErrBadRequest, "--guest-ip %s: --net routed gives the guest an IPv4 address only (IPv6 is not supported yet); give an IPv4 address of %s's LAN", ip, dev)
	case !ip4.IsGlobalUnicast():
		return "", hostnet.Refuse(ErrBadRequest, "--guest-ip %s is not a unicast address a guest can use on a LAN; give an unused address of %s's LAN", ip, dev)
	}
	for _, n := range nets {
		switch {
		case n.IP.Equal(ip4):
			return "", hostnet.Refuse(ErrBadRequest, "--guest-ip %s is %s's own address; give the guest an unused address of %s's LAN", ip, dev, dev)
		case n.Contains(ip4) && isNetworkOrBroadcast(ip4, n):
			return "", hostnet.Refuse(ErrBadRequest, "--guest-ip %s is the network or broadcast address of %s's subnet %s; give the guest an unused address in it", ip, dev, maskedString(n))
		}
	}
	for _, n := range nets {
		if n.Contains(ip4) {
			return "", nil
		}
	}
	subnets := make([]string, len(nets))
	for i, n := range nets {
		subnets[i] = maskedString(n)
	}
	return fmt.Sprintf("--guest-ip %s is outside %s's subnets (%s): proxy ARP cannot make it reachable there, so the LAN's router must route it to this host", ip, dev, strings.Join(subnets, ", ")), nil
}

// isNetworkOrBroadcast reports whether ip is the all-zeros or all-ones host
// part of n (for prefixes shorter than /31, which have both).
func isNetworkOrBroadcast(ip net.IP, n *net.IPNet) bool {
	ones, bits := n.Mask.Size()
	if bits-ones < 2 {
		return false
	}
	network := ip.Mask(n.Mask)
	broadcast := make(net.IP, len(network))
	for i := range network {
		broadcast[i] = network[i] | ^n.Mask[i]
	}
	return ip.Equal(network) || ip.Equal(broadcast)
}

// maskedString is n's network in CIDR form (10.1.2.0/24, not 10.1.2.7/24).
func maskedString(n *net.IPNet) string {
	return (&net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask}).String()
}

// ipv4Nets returns the uplink's IPv4 addresses with their prefixes.
func ipv4Nets(f Facts) []*net.IPNet {
	var nets []*net.IPNet
	for _, a := range f.Addrs {
		ip, n, err := net.ParseCIDR(a)
		if err != nil || ip.To4() == nil {
			continue
		}
		n.IP = ip.To4()
		nets = append(nets, n)
	}
	return nets
}

// routedGuestAddr says where a routed guest's address comes from.
func (r Request) routedGuestAddr() (net.IP, GuestAddrSource) {
	if r.GuestIP != nil {
		return append(net.IP(nil), r.GuestIP.IP.To4()...), GuestAddrStatic
	}
	return nil, GuestAddrUpstream
}

// checkGuestAddr refuses --guest-ip and --gateway for a chosen mode in
// which vmrun cannot give the guest that address.
func (r Request) checkGuestAddr(m Mode) error {
	if r.GuestIP == nil && r.Gateway == nil {
		return nil
	}
	flag := "--guest-ip"
	if r.GuestIP == nil {
		flag = "--gateway"
	}
	switch m {
	case Bridge, Macvtap:
		return hostnet.Refuse(ErrBadRequest, "%s works only where vmrun hands the guest its address (--net routed); with --net %s the guest sits on the LAN and configures its address itself: set it inside the guest, or use --net routed", flag, m)
	case User:
		return hostnet.Refuse(ErrBadRequest, "%s does not apply to user-mode networking, where QEMU gives the guest 10.0.2.15; use --net routed for an address of your choice", flag)
	case None:
		return hostnet.Refuse(ErrBadRequest, "%s needs a network, but --net none gives the guest none; drop %s or choose --net routed", flag, flag)
	}
	return nil
}
