package learn

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/ethernet"
	"golang.org/x/net/bpf"
)

// On a bridge's tap or a macvtap the guest owns a MAC of the LAN, and
// nothing is registered for it: vmrun only watches which addresses the
// guest takes, to show them (`vmrun ls`, `vmrun wait`). A packet socket
// on the guest's link sees the frames of both directions: the guest's
// own (ARP, duplicate address detection, DHCP release) and the DHCP
// server's ACK, which names the server too.

// How a Sighting was made.
const (
	SeenDHCP = "dhcp" // a DHCP server's ACK to the guest (or its release)
	SeenARP  = "arp"  // the guest's ARP: its sender address
	SeenNDP  = "ndp"  // the guest's neighbour solicitation: DAD target, or source
)

// Sighting is what one frame on the guest's link says about its
// addresses.
type Sighting struct {
	Addr netip.Addr
	// Server is the DHCP server that granted Addr (its server identifier,
	// else the reply's source); invalid for the rest.
	Server netip.Addr
	Source string // SeenDHCP, SeenARP or SeenNDP
	Drop   bool   // the guest gave Addr up (DHCPRELEASE, DHCPDECLINE)
}

// LANSighting reads a frame seen on the guest's tap or macvtap, in either
// direction, and says what it tells about the addresses of the guest
// whose MAC is mac:
//   - a DHCPACK for chaddr mac: its yiaddr, and the server;
//   - the guest's DHCPRELEASE or DHCPDECLINE: the address given up;
//   - the guest's ARP: its sender address (not a probe's 0.0.0.0);
//   - the guest's IPv6 neighbour solicitation: the target of a duplicate
//     address detection probe (from ::), else the source.
//
// Nothing else, and never an address that cannot be a host's unicast one.
func LANSighting(frame []byte, mac net.HardwareAddr) (Sighting, bool) {
	if m, ok := dhcpIn(frame, dhcpServerPort, dhcpClientPort); ok {
		return dhcpAck(frame, m, mac)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || !bytes.Equal(f.Source, mac) || f.VLAN != nil {
		return Sighting{}, false
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		if ev, ok := GuestAddrEvent(frame, mac); ok {
			return Sighting{Addr: ev.Addr, Source: SeenARP}, true
		}
	case ethernet.EtherTypeIPv6:
		// An NS without extension headers: next header ICMPv6, type NS.
		if len(f.Payload) > 40 && f.Payload[6] == IPv6ICMP && f.Payload[40] == ICMPv6NS {
			if ev, ok := GuestAddrEvent(frame, mac); ok {
				return Sighting{Addr: ev.Addr, Source: SeenNDP}, true
			}
		}
	case ethernet.EtherTypeIPv4:
		if ev, ok := GuestAddrEvent(frame, mac); ok && ev.Drop {
			return Sighting{Addr: ev.Addr, Source: SeenDHCP, Drop: true}, true
		}
	}
	return Sighting{}, false
}

// GuestDiscover reports whether frame is the guest's DHCPDISCOVER (from
// mac, for mac), and its transaction id: the guest asks the LAN for an
// address. --net auto counts them to tell a LAN that does not answer the
// guest (and leaves out its own probe's, by the xid).
func GuestDiscover(frame []byte, mac net.HardwareAddr) (xid uint32, ok bool) {
	m, ok := dhcpIn(frame, dhcpClientPort, dhcpServerPort)
	if !ok || !bytes.Equal(frame[6:12], mac) || !bytes.Equal(m.ClientHWAddr, mac) ||
		m.OpCode != dhcpv4.OpcodeBootRequest || m.MessageType() != dhcpv4.MessageTypeDiscover {
		return 0, false
	}
	return binary.BigEndian.Uint32(m.TransactionID[:]), true
}

// dhcpAck reads a DHCP server's message: a DHCPACK that grants mac an
// address.
func dhcpAck(frame []byte, m *dhcpv4.DHCPv4, mac net.HardwareAddr) (Sighting, bool) {
	if m.OpCode != dhcpv4.OpcodeBootReply || m.MessageType() != dhcpv4.MessageTypeAck || !bytes.Equal(m.ClientHWAddr, mac) {
		return Sighting{}, false
	}
	a, _ := netip.AddrFromSlice(m.YourIPAddr.To4())
	if !hostUnicast(a) {
		return Sighting{}, false // an ACK to a DHCPINFORM grants nothing
	}
	server, _ := netip.AddrFromSlice(m.ServerIdentifier().To4())
	if !server.IsValid() || server.IsUnspecified() {
		// No server identifier: the IPv4 source of the reply.
		server = netip.AddrFrom4([4]byte(frame[14+12 : 14+16]))
	}
	return Sighting{Addr: a, Server: server, Source: SeenDHCP}, true
}

// EtherTypes and ports LANProgram matches.
const (
	etherIPv4 = uint32(ethernet.EtherTypeIPv4)
	etherARP  = uint32(ethernet.EtherTypeARP)
	etherIPv6 = uint32(ethernet.EtherTypeIPv6)
	dhcpToSrv = dhcpClientPort<<16 | dhcpServerPort // source and destination ports
	dhcpToCli = dhcpServerPort<<16 | dhcpClientPort
)

// LANProgram is the BPF program of the packet socket on the guest's tap
// or macvtap (guest MAC mac): it passes what LANSighting reads — whole
// unfragmented DHCP datagrams (client to server and server to client),
// the headers of the guest's ARP, and the guest's IPv6 neighbour
// solicitations without extension headers — and drops every other frame
// in the kernel, so the guest's traffic never wakes vmrun. The program
// reads 6-byte MACs only.
func LANProgram(mac net.HardwareAddr) ([]bpf.RawInstruction, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("learner filter: MAC %s is not 6 bytes", mac)
	}
	hi, lo := binary.BigEndian.Uint32(mac[0:4]), uint32(binary.BigEndian.Uint16(mac[4:6]))
	// Jumps go forward only: the returns are at the end (21, 22, 23).
	return bpf.Assemble([]bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherIPv4, SkipTrue: 11}, // → 13
		/* 2 */ bpf.LoadAbsolute{Off: 6, Size: 4}, // source MAC
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: hi, SkipTrue: 19},
		/* 4 */ bpf.LoadAbsolute{Off: 10, Size: 2},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: lo, SkipTrue: 17},
		/* 6 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherARP, SkipTrue: 14}, // → 22
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherIPv6, SkipTrue: 14},
		/* 9 */ bpf.LoadAbsolute{Off: 14 + 6, Size: 1}, // next header
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: IPv6ICMP, SkipTrue: 12},
		/* 11 */ bpf.LoadAbsolute{Off: 14 + 40, Size: 1}, // ICMPv6 type
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMPv6NS, SkipTrue: 8, SkipFalse: 10}, // → 21, 23
		/* 13 */ bpf.LoadAbsolute{Off: 14 + 9, Size: 1}, // IPv4 protocol
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 17, SkipTrue: 8},
		/* 15 */ bpf.LoadAbsolute{Off: 14 + 6, Size: 2},
		/* 16 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x3fff, SkipTrue: 6}, // MF or an offset
		/* 17 */ bpf.LoadMemShift{Off: 14},
		/* 18 */ bpf.LoadIndirect{Off: 14, Size: 4}, // UDP ports
		/* 19 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: dhcpToSrv, SkipTrue: 1},
		/* 20 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: dhcpToCli, SkipFalse: 2},
		/* 21 */ bpf.RetConstant{Val: SnapFull},
		/* 22 */ bpf.RetConstant{Val: SnapHeader},
		/* 23 */ bpf.RetConstant{Val: 0},
	})
}

// SourceOf names the kind of evidence an Event's Why gives, as a
// Sighting's Source does, for the learners that keep Why: SeenDHCP,
// SeenARP, SeenNDP, "static" (--guest-ip), or "traffic" (a packet's
// source address).
func SourceOf(why string) string {
	switch {
	case strings.HasPrefix(why, "DHCP"), strings.HasPrefix(why, "leased from"):
		return SeenDHCP
	case why == "ARP":
		return SeenARP
	case strings.Contains(why, "duplicate address detection"):
		return SeenNDP
	case strings.Contains(why, "--guest-ip"), strings.Contains(why, "static"):
		return "static"
	}
	return "traffic"
}
