package learn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/net/bpf"
)

// ackFrame is a DHCP server's ACK to the guest (at 192.168.77.1, with or
// without a server identifier).
func ackFrame(t *testing.T, typ dhcpv4.MessageType, yiaddr string, serverID bool, chaddr net.HardwareAddr) []byte {
	t.Helper()
	req, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(chaddr))
	if err != nil {
		t.Fatal(err)
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(net.ParseIP(yiaddr))}
	if serverID {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.168.77.254"))))
	}
	m, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return ethBytes(t, lanMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.1", "255.255.255.255", 17, udpBytes(67, 68, m.ToBytes())))
}

// lanFrames are the frames a packet socket on the guest's tap or macvtap
// sees, each with what LANSighting and LANProgram make of it.
func lanFrames(t *testing.T) []struct {
	name  string
	frame []byte
	want  Sighting
	ok    bool
	snap  uint32
} {
	other := net.HardwareAddr{0x02, 0, 0, 0, 0x09, 0}
	otherARP := arpBytes(t, arp.OperationRequest, "192.168.77.9", "192.168.77.1")
	copy(otherARP[6:12], other)
	tcp := make([]byte, 20)
	return []struct {
		name  string
		frame []byte
		want  Sighting
		ok    bool
		snap  uint32
	}{
		{"DHCP ACK with a server identifier", ackFrame(t, dhcpv4.MessageTypeAck, "192.168.77.57", true, guestMAC),
			Sighting{Addr: netip.MustParseAddr("192.168.77.57"), Server: netip.MustParseAddr("192.168.77.254"), Source: SeenDHCP}, true, SnapFull},
		{"DHCP ACK without one: the reply's source", ackFrame(t, dhcpv4.MessageTypeAck, "192.168.77.57", false, guestMAC),
			Sighting{Addr: netip.MustParseAddr("192.168.77.57"), Server: netip.MustParseAddr("192.168.77.1"), Source: SeenDHCP}, true, SnapFull},
		{"DHCP OFFER", ackFrame(t, dhcpv4.MessageTypeOffer, "192.168.77.57", true, guestMAC), Sighting{}, false, SnapFull},
		{"DHCP ACK to another client", ackFrame(t, dhcpv4.MessageTypeAck, "192.168.77.58", true, other), Sighting{}, false, SnapFull},
		{"DHCP ACK to an INFORM", ackFrame(t, dhcpv4.MessageTypeAck, "0.0.0.0", true, guestMAC), Sighting{}, false, SnapFull},
		{"the guest's DHCP REQUEST", dhcpFrame(t, dhcpv4.MessageTypeRequest, "", "192.168.77.57"), Sighting{}, false, SnapFull},
		{"the guest's DHCP RELEASE", dhcpFrame(t, dhcpv4.MessageTypeRelease, "192.168.77.57", ""),
			Sighting{Addr: netip.MustParseAddr("192.168.77.57"), Source: SeenDHCP, Drop: true}, true, SnapFull},
		{"the guest's ARP", arpBytes(t, arp.OperationRequest, "192.168.77.57", "192.168.77.1"),
			Sighting{Addr: netip.MustParseAddr("192.168.77.57"), Source: SeenARP}, true, SnapHeader},
		{"the guest's ARP probe", arpBytes(t, arp.OperationRequest, "0.0.0.0", "192.168.77.57"), Sighting{}, false, SnapHeader},
		{"another host's ARP", otherARP, Sighting{}, false, 0},
		{"the guest's DAD probe", nsBytes(t, "::", "2001:db8::57"),
			Sighting{Addr: netip.MustParseAddr("2001:db8::57"), Source: SeenNDP}, true, SnapFull},
		{"the guest's neighbour solicitation", nsBytes(t, "2001:db8::58", "2001:db8::1"),
			Sighting{Addr: netip.MustParseAddr("2001:db8::58"), Source: SeenNDP}, true, SnapFull},
		{"the guest's TCP over IPv6", ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes("2001:db8::59", "2001:db8::1", 6, tcp)), Sighting{}, false, 0},
		{"the guest's TCP over IPv4", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.60", "192.168.77.1", 6, tcp)), Sighting{}, false, 0},
		{"the guest's DNS", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.60", "192.168.77.1", 17, udpBytes(5353, 53, nil))), Sighting{}, false, 0},
		{"VLAN tagged", ethBytes(t, guestMAC, ethernet.EtherTypeVLAN, make([]byte, 46)), Sighting{}, false, 0},
	}
}

func TestLANSighting(t *testing.T) {
	for _, tt := range lanFrames(t) {
		got, ok := LANSighting(tt.frame, guestMAC)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestLANProgram: the kernel filter passes (whole, or the headers) every
// frame LANSighting learns from, and drops the guest's traffic.
func TestLANProgram(t *testing.T) {
	raw, err := LANProgram(guestMAC)
	if err != nil {
		t.Fatal(err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("LANProgram does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range lanFrames(t) {
		got, err := vm.Run(tt.frame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if uint32(got) != tt.snap {
			t.Errorf("%s: filter keeps %d bytes, want %d", tt.name, got, tt.snap)
		}
		if tt.ok && got == 0 {
			t.Errorf("%s: dropped, but LANSighting learns from it", tt.name)
		}
	}
	if _, err := LANProgram(net.HardwareAddr{1, 2, 3}); err == nil {
		t.Error("a 3-byte MAC was accepted")
	}
}

func TestSourceOf(t *testing.T) {
	for why, want := range map[string]string{
		"DHCP request": SeenDHCP, "leased from 192.168.1.1 with client-id vmrun-vm for 24h0m0s": SeenDHCP, "DHCP ack, sent unicast": SeenDHCP, "ARP": SeenARP,
		"IPv6 duplicate address detection": SeenNDP, "--guest-ip": "static", "IPv4 source": "traffic",
	} {
		if got := SourceOf(why); got != want {
			t.Errorf("SourceOf(%q) = %q, want %q", why, got, want)
		}
	}
}

func TestGuestDiscover(t *testing.T) {
	other := net.HardwareAddr{0x02, 0, 0, 0, 0x02, 0}
	for _, c := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"the guest's DISCOVER", dhcpFrame(t, dhcpv4.MessageTypeDiscover, "", ""), true},
		{"the guest's REQUEST", dhcpFrame(t, dhcpv4.MessageTypeRequest, "", "192.168.77.57"), false},
		{"a server's ACK", ackFrame(t, dhcpv4.MessageTypeAck, "192.168.77.57", true, guestMAC), false},
		{"the guest's ARP", ethBytes(t, guestMAC, ethernet.EtherTypeARP, arpBytes(t, arp.OperationRequest, "192.168.77.57", "192.168.77.1")), false},
	} {
		xid, got := GuestDiscover(c.frame, guestMAC)
		if got != c.want {
			t.Errorf("%s: GuestDiscover = %v, want %v", c.name, got, c.want)
		}
		// The xid is the BOOTP message's, at its offset 4 (after the
		// Ethernet, IPv4 and UDP headers here).
		if want := binary.BigEndian.Uint32(c.frame[14+20+8+4:]); got && xid != want {
			t.Errorf("%s: xid %#x, want %#x", c.name, xid, want)
		}
	}
	if _, ok := GuestDiscover(dhcpFrame(t, dhcpv4.MessageTypeDiscover, "", ""), other); ok {
		t.Error("another client's DISCOVER counted as the guest's")
	}
}
