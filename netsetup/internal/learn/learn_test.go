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
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Frames as a guest sharing the station's MAC sends them.
var (
	guestMAC = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0}
	lanMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0x00, 0}
)

func ethBytes(t *testing.T, src net.HardwareAddr, et ethernet.EtherType, payload []byte) []byte {
	t.Helper()
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: src, EtherType: et, Payload: payload}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ipv4Bytes is an IPv4 packet (proto 17 with a UDP header when ports != nil).
func ipv4Bytes(t *testing.T, src, dst string, proto int, payload []byte) []byte {
	t.Helper()
	h := ipv4.Header{Version: 4, Len: 20, TotalLen: 20 + len(payload), TTL: 64, Protocol: proto,
		Src: net.ParseIP(src), Dst: net.ParseIP(dst)}
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, payload...)
}

func udpBytes(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(u, payload...)
}

// dhcpFrame is a DHCP client message from the guest (source 0.0.0.0 or
// ciaddr, as clients send them).
func dhcpFrame(t *testing.T, typ dhcpv4.MessageType, ciaddr, requested string) []byte {
	t.Helper()
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithHwAddr(guestMAC), dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{0}, "vmrun-guest"...)))}
	src := "0.0.0.0"
	if ciaddr != "" {
		mods = append(mods, dhcpv4.WithClientIP(net.ParseIP(ciaddr)))
		src = ciaddr
	}
	if requested != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(requested))))
	}
	m, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	return ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, src, "255.255.255.255", 17, udpBytes(68, 67, m.ToBytes())))
}

func arpBytes(t *testing.T, op arp.Operation, spa, tpa string) []byte {
	t.Helper()
	p, err := arp.NewPacket(op, guestMAC, netip.MustParseAddr(spa), make(net.HardwareAddr, 6), netip.MustParseAddr(tpa))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return ethBytes(t, guestMAC, ethernet.EtherTypeARP, b)
}

// ipv6Bytes is an IPv6 packet with next header nh.
func ipv6Bytes(src, dst string, nh byte, payload []byte) []byte {
	h := make([]byte, ipv6.HeaderLen, ipv6.HeaderLen+len(payload))
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = nh, 255
	copy(h[8:24], net.ParseIP(src).To16())
	copy(h[24:40], net.ParseIP(dst).To16())
	return append(h, payload...)
}

func nsBytes(t *testing.T, src, target string) []byte {
	t.Helper()
	body := append(make([]byte, 4), net.ParseIP(target).To16()...)
	m := icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: &icmp.RawBody{Data: body}}
	b, err := m.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes(src, "ff02::1:ff00:57", 58, b))
}

func TestGuestAddrEvent(t *testing.T) {
	tcp := make([]byte, 20)
	hbh := append([]byte{58, 0, 5, 2, 0, 0, 1, 0}, []byte{}...) // hop-by-hop (router alert), then ICMPv6
	nsBody := func() []byte {
		m := icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: &icmp.RawBody{Data: append(make([]byte, 4), net.ParseIP("2001:db8::57").To16()...)}}
		b, _ := m.Marshal(nil)
		return b
	}
	tests := []struct {
		name  string
		frame []byte
		want  string // "" for no event, "+ADDR why" or "-ADDR why"
	}{
		{"DHCPREQUEST selecting", dhcpFrame(t, dhcpv4.MessageTypeRequest, "", "192.168.77.57"), "+192.168.77.57 DHCP request"},
		{"DHCPREQUEST init-reboot", dhcpFrame(t, dhcpv4.MessageTypeRequest, "", "192.168.77.58"), "+192.168.77.58 DHCP request"},
		{"DHCPREQUEST renewing", dhcpFrame(t, dhcpv4.MessageTypeRequest, "192.168.77.57", ""), "+192.168.77.57 DHCP renewal"},
		{"DHCPDISCOVER", dhcpFrame(t, dhcpv4.MessageTypeDiscover, "", "192.168.77.57"), ""},
		{"DHCPRELEASE", dhcpFrame(t, dhcpv4.MessageTypeRelease, "192.168.77.57", ""), "-192.168.77.57 DHCP release"},
		{"DHCPDECLINE", dhcpFrame(t, dhcpv4.MessageTypeDecline, "", "192.168.77.59"), "-192.168.77.59 DHCP decline"},
		{"DHCPINFORM", dhcpFrame(t, dhcpv4.MessageTypeInform, "192.168.77.60", ""), "+192.168.77.60 DHCP inform"},
		{"DHCPREQUEST without an address", dhcpFrame(t, dhcpv4.MessageTypeRequest, "", ""), ""},
		{"ARP announcement", arpBytes(t, arp.OperationRequest, "192.168.77.57", "192.168.77.57"), "+192.168.77.57 ARP"},
		{"ARP request", arpBytes(t, arp.OperationRequest, "192.168.77.57", "192.168.77.1"), "+192.168.77.57 ARP"},
		{"ARP reply", arpBytes(t, arp.OperationReply, "192.168.77.57", "192.168.77.1"), "+192.168.77.57 ARP"},
		{"ARP probe", arpBytes(t, arp.OperationRequest, "0.0.0.0", "192.168.77.57"), ""},
		{"IPv4 source", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.57", "192.168.77.1", 6, tcp)), "+192.168.77.57 IPv4 source"},
		{"IPv4 from 0.0.0.0", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "0.0.0.0", "224.0.0.22", 2, tcp)), ""},
		{"IPv4 from a multicast address", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "224.0.0.1", "192.168.77.1", 6, tcp)), ""},
		{"UDP that is not DHCP", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.57", "192.168.77.1", 17, udpBytes(5353, 53, []byte("x")))), "+192.168.77.57 IPv4 source"},
		{"IPv6 DAD probe", nsBytes(t, "::", "2001:db8::57"), "+2001:db8::57 IPv6 duplicate address detection"},
		{"IPv6 DAD probe of a link-local", nsBytes(t, "::", "fe80::1234"), "+fe80::1234 IPv6 duplicate address detection"},
		{"IPv6 DAD probe after hop-by-hop", ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes("::", "ff02::1:ff00:57", 0, append(hbh, nsBody()...))), "+2001:db8::57 IPv6 duplicate address detection"},
		{"IPv6 NS from an address", nsBytes(t, "2001:db8::57", "2001:db8::1"), "+2001:db8::57 IPv6 source"},
		{"IPv6 ULA source", ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes("fd00::57", "fd00::1", 6, tcp)), "+fd00::57 IPv6 source"},
		{"IPv6 MLD report from ::", ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes("::", "ff02::16", 0, append([]byte{58, 0, 5, 2, 0, 0, 1, 0}, 143, 0, 0, 0))), ""},
		{"another MAC", ethBytes(t, lanMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.1", "192.168.77.57", 6, tcp)), ""},
		{"truncated", dhcpFrame(t, dhcpv4.MessageTypeRequest, "", "192.168.77.57")[:30], ""},
		{"garbage", []byte{1, 2, 3}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok := GuestAddrEvent(tt.frame, guestMAC)
			got := ""
			if ok {
				sign := "+"
				if ev.Drop {
					sign = "-"
				}
				got = sign + ev.Addr.String() + " " + ev.Why
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAddrPolicy(t *testing.T) {
	p := Policy{
		Host:     map[netip.Addr]bool{netip.MustParseAddr("192.168.77.100"): true, netip.MustParseAddr("fe80::ff:fe00:100"): true, netip.MustParseAddr("2001:db8::100"): true},
		Gateways: map[netip.Addr]bool{netip.MustParseAddr("192.168.77.1"): true},
	}
	for a, want := range map[string]int{
		"192.168.77.57":           AddrOK,
		"192.168.77.100":          AddrHost,
		"::ffff:192.168.77.100":   AddrHost,
		"2001:db8::100":           AddrHost,
		"fe80::ff:fe00:100":       AddrHostLinkLoc,
		"fe80::5054:ff:fe12:3456": AddrOK,
		"192.168.77.1":            AddrGateway,
	} {
		if got := p.Check(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s: verdict %d, want %d", a, got, want)
		}
	}
}

func TestLearnFilter(t *testing.T) {
	known := []netip.Addr{netip.MustParseAddr("192.168.77.57"), netip.MustParseAddr("192.168.77.100"), netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("2001:db8::57"), netip.MustParseAddr("fe80::1")}
	vm, err := bpf.NewVM(learnFilter(known))
	if err != nil {
		t.Fatal(err)
	}
	tcp := make([]byte, 20)
	tests := []struct {
		name  string
		frame []byte
		want  int
	}{
		{"ARP", arpBytes(t, arp.OperationRequest, "192.168.77.57", "192.168.77.1"), SnapHeader},
		{"DHCP from 0.0.0.0", dhcpFrame(t, dhcpv4.MessageTypeRequest, "", "192.168.77.57"), SnapFull},
		{"DHCP renewal from a known address", dhcpFrame(t, dhcpv4.MessageTypeRequest, "192.168.77.57", ""), SnapFull},
		{"DHCP release from a known address", dhcpFrame(t, dhcpv4.MessageTypeRelease, "192.168.77.57", ""), SnapFull},
		{"IPv4 from a registered address", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.57", "192.168.77.1", 6, tcp)), 0},
		{"IPv4 from the host's address", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.100", "192.168.77.1", 6, tcp)), 0},
		{"IPv4 from a new address", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.58", "192.168.77.1", 6, tcp)), SnapHeader},
		{"UDP from a known address", ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, "192.168.77.57", "192.168.77.1", 17, udpBytes(5353, 53, nil))), 0},
		{"IPv6 from a registered address", ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes("2001:db8::57", "2001:db8::1", 6, tcp)), 0},
		{"IPv6 from a registered link-local", ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes("fe80::1", "fe80::2", 6, tcp)), 0},
		{"IPv6 from an address sharing 3 words", ethBytes(t, guestMAC, ethernet.EtherTypeIPv6, ipv6Bytes("2001:db8::58", "2001:db8::1", 6, tcp)), SnapFull},
		{"IPv6 DAD probe", nsBytes(t, "::", "2001:db8::58"), SnapFull},
		{"VLAN tagged", ethBytes(t, guestMAC, ethernet.EtherTypeVLAN, make([]byte, 46)), 0},
		{"other EtherType", ethBytes(t, guestMAC, 0x88cc, make([]byte, 46)), 0},
	}
	for _, tt := range tests {
		got, err := vm.Run(tt.frame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: filter keeps %d bytes, want %d", tt.name, got, tt.want)
		}
	}
	// Far jumps: many known addresses still assemble, with the direction check.
	var many []netip.Addr
	for i := range 300 {
		many = append(many, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}))
	}
	raw, err := Program(many)
	if err != nil || len(raw) > 4096 {
		t.Fatalf("program for %d addresses: %d instructions, %v", len(many), len(raw), err)
	}
	vm, err = bpf.NewVM(learnFilter(many))
	if err != nil {
		t.Fatal(err)
	}
	for frame, want := range map[string]int{"10.0.1.43": 0, "10.0.2.0": SnapHeader} {
		got, err := vm.Run(ethBytes(t, guestMAC, ethernet.EtherTypeIPv4, ipv4Bytes(t, frame, "10.0.0.1", 6, tcp)))
		if err != nil || got != want {
			t.Errorf("with 600 known addresses, IPv4 from %s: %d, %v; want %d", frame, got, err, want)
		}
	}
}

func TestGARPFrame(t *testing.T) {
	b, err := GARPFrame(guestMAC, netip.MustParseAddr("192.168.77.57"))
	if err != nil {
		t.Fatal(err)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	if f.Destination.String() != "ff:ff:ff:ff:ff:ff" || f.Source.String() != guestMAC.String() || p.Operation != arp.OperationRequest ||
		p.SenderIP != p.TargetIP || p.SenderIP.String() != "192.168.77.57" || p.SenderHardwareAddr.String() != guestMAC.String() {
		t.Errorf("gratuitous ARP %+v / %+v", f, p)
	}
	if ev, ok := GuestAddrEvent(b, guestMAC); !ok || ev.Addr.String() != "192.168.77.57" {
		t.Errorf("the learner reads the announcement as %+v, %v", ev, ok)
	}
}
