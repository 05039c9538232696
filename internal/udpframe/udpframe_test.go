package udpframe

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"golang.org/x/net/bpf"
)

var (
	testGuestMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	testHostMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
)

func TestFrameRoundTrip(t *testing.T) {
	d := &Datagram{
		SrcMAC: testGuestMAC, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		Src: net.IPv4zero, Dst: net.IPv4bcast, SrcPort: 68, DstPort: 67,
		Payload: []byte("odd-length payload"),
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ip := b[14 : 14+ipv4HeaderLen]
	if got := fold(sum(ip, 0)); got != 0xffff {
		t.Errorf("ipv4 header checksum does not verify: folded sum %#04x", got)
	}
	u := b[14+ipv4HeaderLen:]
	pseudo := sum(d.Src.To4(), sum(d.Dst.To4(), 0)) + protoUDP + uint32(len(u))
	if got := fold(sum(u, pseudo)); got != 0xffff {
		t.Errorf("udp checksum does not verify: folded sum %#04x", got)
	}
	// Ethernet padding after the Datagram must be ignored.
	got, err := Parse(append(b, 0, 0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.SrcMAC, d.SrcMAC) || !bytes.Equal(got.DstMAC, d.DstMAC) ||
		!got.Src.Equal(d.Src) || !got.Dst.Equal(d.Dst) || got.SrcPort != d.SrcPort ||
		got.DstPort != d.DstPort || string(got.Payload) != string(d.Payload) {
		t.Errorf("round trip: got %+v, want %+v", got, d)
	}
}

func TestParseFrameRejects(t *testing.T) {
	good := func() []byte {
		b, err := (&Datagram{SrcMAC: testGuestMAC, DstMAC: testHostMAC, Src: net.IPv4(10, 0, 0, 2),
			Dst: net.IPv4(10, 0, 0, 1), SrcPort: 68, DstPort: 67, Payload: make([]byte, 300)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, mangle := range map[string]func(b []byte) []byte{
		"arp":         func(b []byte) []byte { b[12], b[13] = 0x08, 0x06; return b },
		"tcp":         func(b []byte) []byte { b[14+9] = 6; return b },
		"fragment":    func(b []byte) []byte { b[14+6] = 0x20; return b }, // more fragments
		"short ip":    func(b []byte) []byte { return b[:14+10] },
		"udp len big": func(b []byte) []byte { binary.BigEndian.PutUint16(b[14+20+4:], 2000); return b },
		"truncated":   func(b []byte) []byte { return b[:100] },
	} {
		if _, err := Parse(mangle(good())); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

func TestUDPPortFilter(t *testing.T) {
	if _, err := PortFilter(67); err != nil {
		t.Fatalf("assemble: %v", err)
	}
	vm, err := bpf.NewVM(PortMatch(67))
	if err != nil {
		t.Fatal(err)
	}
	frame := func(dport int, mangle func([]byte)) []byte {
		b, err := (&Datagram{SrcMAC: testGuestMAC, DstMAC: testHostMAC, Src: net.IPv4zero,
			Dst: net.IPv4bcast, SrcPort: 68, DstPort: dport, Payload: make([]byte, 300)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if mangle != nil {
			mangle(b)
		}
		return b
	}
	withOptions := func(b []byte) { // IHL 6: the UDP header moves by 4 bytes
		b[14] = 0x46
		copy(b[14+24:], b[14+20:len(b)-4])
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"udp to 67", frame(67, nil), true},
		{"udp to 68", frame(68, nil), false},
		{"udp to 67 with ip options", frame(67, withOptions), true},
		{"tcp", frame(67, func(b []byte) { b[14+9] = 6 }), false},
		{"ipv6 ethertype", frame(67, func(b []byte) { b[12], b[13] = 0x86, 0xdd }), false},
		{"later fragment", frame(67, func(b []byte) { b[14+7] = 1 }), false},
	} {
		n, err := vm.Run(tc.frame)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := n > 0; got != tc.want {
			t.Errorf("%s: accepted=%v, want %v", tc.name, got, tc.want)
		}
	}
}
