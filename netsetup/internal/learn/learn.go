// Package learn reads the frames a guest sends and says what they tell
// about its addresses, and builds the BPF programs that let only such
// frames reach vmrun: the guest-address learner of ipvtap and routed IPv6.
package learn

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// An ipvtap guest's addresses must be registered on its ipvtap link:
// ipvlan hands a frame arriving on the parent to a slave only by the
// frame's destination IP (DESIGN.md, "ipvtap on Wi-Fi", point 4). Without
// --guest-ip vmrun learns them from what the guest sends: the functions
// here read one frame and say what it tells about the guest's addresses.

// Event is what one frame sent by the guest says about its addresses.
type Event struct {
	Addr netip.Addr
	// Drop: the guest gave the address up (DHCPRELEASE, DHCPDECLINE).
	Drop bool
	// Why names the evidence: "DHCP request", "ARP", "IPv4 source", ...
	Why string
}

// UDP ports of DHCPv4.
const (
	dhcpServerPort = 67
	dhcpClientPort = 68
)

// GuestAddrEvent parses a frame the guest sent (its source MAC is mac)
// and returns what it says about the guest's addresses, if anything:
//   - DHCPREQUEST: the requested address (option 50: selecting, init-reboot)
//     or ciaddr (renewing, rebinding), before the server's ACK arrives;
//     DHCPINFORM: ciaddr;
//   - DHCPRELEASE (ciaddr) and DHCPDECLINE (option 50): dropped;
//   - ARP requests, replies and announcements: the sender address (not
//     probes, whose sender is 0.0.0.0);
//   - an IPv6 duplicate address detection probe (neighbour solicitation
//     from ::): its target;
//   - any other IPv4 or IPv6 packet: its source address.
//
// Addresses that are no unicast address of a host (unspecified,
// multicast, broadcast, loopback) are never returned.
func GuestAddrEvent(frame []byte, mac net.HardwareAddr) (Event, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || !bytes.Equal(f.Source, mac) || f.VLAN != nil {
		return Event{}, false
	}
	var ev Event
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		ev = arpEvent(f.Payload)
	case ethernet.EtherTypeIPv4:
		ev = ipv4Event(f.Payload)
	case ethernet.EtherTypeIPv6:
		ev = ipv6Event(f.Payload)
	}
	if !hostUnicast(ev.Addr) {
		return Event{}, false
	}
	return ev, true
}

func arpEvent(b []byte) Event {
	var p arp.Packet
	if err := p.UnmarshalBinary(b); err != nil || p.ProtocolType != uint16(ethernet.EtherTypeIPv4) {
		return Event{}
	}
	return Event{Addr: p.SenderIP, Why: "ARP"}
}

func ipv4Event(b []byte) Event {
	h, err := ipv4.ParseHeader(b)
	if err != nil || h.Version != 4 || h.Len > len(b) {
		return Event{}
	}
	if h.Protocol == 17 && h.FragOff == 0 && h.Flags&ipv4.MoreFragments == 0 {
		end := len(b)
		if h.TotalLen >= h.Len && h.TotalLen < end {
			end = h.TotalLen // no Ethernet padding
		}
		if ev, ok := dhcpEvent(b[h.Len:end]); ok {
			return ev
		}
	}
	src, _ := netip.AddrFromSlice(h.Src.To4())
	return Event{Addr: src, Why: "IPv4 source"}
}

// dhcpEvent reads a DHCP client message; ok is false for anything else.
func dhcpEvent(udp []byte) (Event, bool) {
	if len(udp) < 8 || binary.BigEndian.Uint16(udp[0:2]) != dhcpClientPort || binary.BigEndian.Uint16(udp[2:4]) != dhcpServerPort {
		return Event{}, false
	}
	m, err := dhcpv4.FromBytes(udp[8:])
	if err != nil || m.OpCode != dhcpv4.OpcodeBootRequest {
		return Event{}, true // DHCP, but nothing to learn
	}
	addr := func(ip net.IP) netip.Addr {
		a, _ := netip.AddrFromSlice(ip.To4())
		return a
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeRequest:
		if r := m.RequestedIPAddress(); r != nil {
			return Event{Addr: addr(r), Why: "DHCP request"}, true
		}
		return Event{Addr: addr(m.ClientIPAddr), Why: "DHCP renewal"}, true
	case dhcpv4.MessageTypeInform:
		return Event{Addr: addr(m.ClientIPAddr), Why: "DHCP inform"}, true
	case dhcpv4.MessageTypeRelease:
		return Event{Addr: addr(m.ClientIPAddr), Drop: true, Why: "DHCP release"}, true
	case dhcpv4.MessageTypeDecline:
		return Event{Addr: addr(m.RequestedIPAddress()), Drop: true, Why: "DHCP decline"}, true
	}
	return Event{}, true // DISCOVER: the address is not granted yet
}

// IPv6 next-header values walked by ipv6Event.
const (
	ipv6HopByHop = 0
	IPv6ICMP     = 58
	ICMPv6NS     = 135
)

func ipv6Event(b []byte) Event {
	h, err := ipv6.ParseHeader(b)
	if err != nil || h.Version != 6 {
		return Event{}
	}
	src, _ := netip.AddrFromSlice(h.Src.To16())
	if src.IsUnspecified() {
		return dadEvent(h.NextHeader, b[ipv6.HeaderLen:])
	}
	return Event{Addr: src, Why: "IPv6 source"}
}

// dadEvent reads a packet from :: : a neighbour solicitation from :: is a
// duplicate address detection probe for its target, the address the guest
// is about to use.
func dadEvent(next int, b []byte) Event {
	if next == ipv6HopByHop && len(b) >= 8 {
		next, b = int(b[0]), b[8*(int(b[1])+1):]
	}
	// type, code, checksum, reserved, target
	if next != IPv6ICMP || len(b) < 24 || b[0] != ICMPv6NS || b[1] != 0 {
		return Event{}
	}
	t, _ := netip.AddrFromSlice(b[8:24])
	return Event{Addr: t, Why: "IPv6 duplicate address detection"}
}

// hostUnicast reports whether a can be a host's own unicast address.
func hostUnicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// Policy decides which learnt addresses are registered: never the
// host's own (the guest would take the host's traffic), nor a gateway's.
type Policy struct {
	Host     map[netip.Addr]bool // the host's own addresses
	Gateways map[netip.Addr]bool // the gateways' addresses
}

// Verdicts of Policy.Check.
const (
	AddrOK          = iota
	AddrHost        // one of the host's addresses
	AddrHostLinkLoc // the host's IPv6 link-local: EUI-64 from the shared MAC
	AddrGateway     // a gateway's address
)

func (p Policy) Check(a netip.Addr) int {
	a = a.Unmap()
	switch {
	case p.Host[a] && a.Is6() && a.IsLinkLocalUnicast():
		return AddrHostLinkLoc
	case p.Host[a]:
		return AddrHost
	case p.Gateways[a]:
		return AddrGateway
	}
	return AddrOK
}

// Snap lengths of the learner's filter: whole DHCP and IPv6 frames, the
// headers of the rest.
const (
	SnapFull   = 1600
	SnapHeader = 128
)

// learnFilter is the body of the learner socket's BPF program (after the
// direction check, see Program): it passes the frames that can teach
// something — ARP, DHCP client messages, IPv4 and IPv6 packets from an
// address not in known (the registered and ignored ones) — and drops the
// rest in the kernel, so a guest's steady traffic never reaches vmrun.
func learnFilter(known []netip.Addr) []bpf.Instruction {
	var v4, v6 []netip.Addr
	for _, a := range known {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		} else if a.Is6() {
			v6 = append(v6, a)
		}
	}
	ipv4Block := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 14 + 9, Size: 1}, // protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 17, SkipTrue: 4},
		bpf.LoadMemShift{Off: 14},              // X = IPv4 header length
		bpf.LoadIndirect{Off: 14 + 2, Size: 2}, // UDP destination port
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: dhcpServerPort, SkipTrue: 1},
		bpf.RetConstant{Val: SnapFull},
		bpf.LoadAbsolute{Off: 14 + 12, Size: 4}, // source address
	}
	for _, a := range v4 {
		b := a.As4()
		ipv4Block = append(ipv4Block,
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(b[:]), SkipTrue: 1},
			bpf.RetConstant{Val: 0})
	}
	ipv4Block = append(ipv4Block, bpf.RetConstant{Val: SnapHeader})

	var ipv6Block []bpf.Instruction
	for _, a := range v6 {
		b := a.As16()
		for w := 0; w < 4; w++ {
			ipv6Block = append(ipv6Block,
				bpf.LoadAbsolute{Off: uint32(14 + 8 + 4*w), Size: 4},
				bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(b[4*w:]), SkipTrue: uint8(2*(3-w) + 1)})
		}
		ipv6Block = append(ipv6Block, bpf.RetConstant{Val: 0})
	}
	ipv6Block = append(ipv6Block, bpf.RetConstant{Val: SnapFull})

	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(ethernet.EtherTypeARP), SkipTrue: 1},
		bpf.RetConstant{Val: SnapHeader},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(ethernet.EtherTypeIPv4), SkipFalse: 1},
		bpf.Jump{Skip: 1},
		bpf.Jump{Skip: uint32(len(ipv4Block))},
	}
	prog = append(prog, ipv4Block...)
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(ethernet.EtherTypeIPv6), SkipFalse: 1},
		bpf.Jump{Skip: 1},
		bpf.Jump{Skip: uint32(len(ipv6Block))})
	prog = append(prog, ipv6Block...)
	return append(prog, bpf.RetConstant{Val: 0})
}

// packetOutgoing is the kernel's PACKET_OUTGOING packet type.
const packetOutgoing = 4

// Program is the learner socket's whole BPF program: only frames the
// guest sent (outgoing on its ipvtap link), then learnFilter.
func Program(known []netip.Addr) ([]bpf.RawInstruction, error) {
	prog := append([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}, learnFilter(known)...)
	return bpf.Assemble(prog)
}

// GARPFrame is a gratuitous ARP request announcing ip at mac: it makes
// the LAN's neighbour caches point ip at mac again.
func GARPFrame(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, ip, make(net.HardwareAddr, 6), ip)
	if err != nil {
		return nil, err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

// dhcpIn parses the DHCP message of an Ethernet/IPv4/UDP frame from port
// sport to dport.
func dhcpIn(frame []byte, sport, dport uint16) (*dhcpv4.DHCPv4, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeIPv4 || f.VLAN != nil {
		return nil, false
	}
	h, err := ipv4.ParseHeader(f.Payload)
	if err != nil || h.Version != 4 || h.Protocol != 17 || h.FragOff != 0 || h.Flags&ipv4.MoreFragments != 0 {
		return nil, false
	}
	end := len(f.Payload)
	if h.TotalLen >= h.Len && h.TotalLen < end {
		end = h.TotalLen
	}
	udp := f.Payload[h.Len:end]
	if len(udp) < 8 || binary.BigEndian.Uint16(udp[0:2]) != sport || binary.BigEndian.Uint16(udp[2:4]) != dport {
		return nil, false
	}
	m, err := dhcpv4.FromBytes(udp[8:])
	return m, err == nil
}
