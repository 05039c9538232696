package ipvtap

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/internal/udpframe"
)

// portLab is the DHCP port's filters on a veth lab, in one namespace: g0
// stands for the ipvtap (a frame written on a packet socket on g0 leaves
// through its qdisc, as a guest's frame leaves the ipvtap), its peer lan0
// for the LAN; the port (on the namespace's loopback) and the answer
// socket as vmrun makes them.
type portLab struct {
	g0, lan0, answers, port *packet.Conn
}

// newPortLab makes the lab with the qdisc addPortFilters picks (qdisc
// "") or clsact.
func newPortLab(t *testing.T, qdisc string) *portLab {
	n := testutil.NewNetns(t, "dport")
	n.MustRun(t, "ip", "link", "add", "g0", "type", "veth", "peer", "name", "lan0")
	n.MustRun(t, "ip", "link", "set", "g0", "up")
	n.MustRun(t, "ip", "link", "set", "lan0", "up")
	l := &portLab{}
	err := n.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		if l.port, err = openPort(h); err != nil {
			return err
		}
		g0, err := h.LinkByName("g0")
		if err != nil {
			return err
		}
		got, err := addPortFilters(h, g0.Attrs().Index, loIndex, labMAC, qdisc)
		if err != nil {
			return err
		}
		if qdisc != "" && got != qdisc {
			return fmt.Errorf("the filters are on a %s qdisc, not %s", got, qdisc)
		}
		t.Logf("the filters are on a %s qdisc", got)
		if l.answers, err = openAnswerSocket(g0.Attrs()); err != nil {
			return err
		}
		l.g0, err = packet.Listen(&net.Interface{Index: g0.Attrs().Index, Name: "g0"}, packet.Raw, ethPAll, nil)
		if err != nil {
			return err
		}
		lan, err := h.LinkByName("lan0")
		if err != nil {
			return err
		}
		l.lan0, err = packet.Listen(&net.Interface{Index: lan.Attrs().Index, Name: "lan0"}, packet.Raw, ethPAll, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.g0.Close(); l.lan0.Close(); l.answers.Close(); l.port.Close() })
	return l
}

var labMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// ndFrame is an IPv6 neighbour solicitation (135) or advertisement (136)
// from labMAC for target (the ICMPv6 checksum is not filled in: the
// filters do not read it).
func ndFrame(typ byte, src, target string) []byte {
	f := append([]byte{0x33, 0x33, 0, 0, 0, 1}, labMAC...)
	f = append(f, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 24, 58, 255)
	f = append(f, net.ParseIP(src).To16()...)
	f = append(f, net.ParseIP("ff02::1").To16()...)
	f = append(f, typ, 0, 0, 0, 0, 0, 0, 0)
	return append(f, net.ParseIP(target).To16()...)
}

// udp6Frame is a UDP/IPv6 frame from labMAC whose source address
// (2011::1) puts 17 where IPv4 has its protocol: only the EtherType tells
// it from UDP/IPv4.
func udp6Frame() []byte {
	f := append([]byte{0x33, 0x33, 0, 0, 0, 1}, labMAC...)
	f = append(f, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 255)
	f = append(f, net.ParseIP("2011::1").To16()...)
	f = append(f, net.ParseIP("ff02::1").To16()...)
	return append(f, 0x13, 0x88, 0, 67, 0, 8, 0, 0)
}

// arpFrame is an ARP request from labMAC for 192.0.2.1.
func arpFrame() []byte {
	f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, labMAC...)
	f = append(f, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	f = append(append(f, labMAC...), 0, 0, 0, 0)
	return append(f, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1)
}

// udpFrame is a UDP/IPv4 frame from labMAC.
func udpFrame(t *testing.T, dst net.IP, sport, dport int, payload []byte) []byte {
	t.Helper()
	b, err := (&udpframe.Datagram{SrcMAC: labMAC, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: net.IPv4zero, Dst: dst,
		SrcPort: sport, DstPort: dport, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withOptions gives frame's IPv4 header 4 bytes of options (a no-op and
// end-of-list), so that the UDP header starts at offset 24.
func withOptions(frame []byte) []byte {
	out := append([]byte(nil), frame[:14+20]...)
	out = append(out, 1, 1, 1, 0)
	out = append(out, frame[14+20:]...)
	out[14] = 0x46
	total := int(out[16])<<8 | int(out[17]) + 4
	out[16], out[17] = byte(total>>8), byte(total)
	out[24], out[25] = 0, 0
	var sum uint32
	for i := 14; i < 14+24; i += 2 {
		sum += uint32(out[i])<<8 | uint32(out[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	out[24], out[25] = byte(c>>8), byte(c)
	return out
}

// seen reads c until a frame equal to want (compared from the Ethernet
// header on) arrives, or d passes.
func seen(c *packet.Conn, want []byte, d time.Duration) bool {
	buf := make([]byte, 2048)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		_ = c.SetReadDeadline(end)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		if bytes.Equal(buf[:n], want) {
			return true
		}
	}
	return false
}

// TestDHCPPortFilters: a DHCP client message leaving the guest's link
// (broadcast, unicast to a server, with IP options, under a VLAN tag)
// reaches the port and never the LAN; other UDP (to port 68, 53, 1067)
// reaches the LAN and not the port, and so does ARP; vmrun's answer, sent
// on the guest's link, arrives on its receive side, and not on the LAN.
func TestDHCPPortFilters(t *testing.T) {
	for _, qdisc := range []string{"", "clsact"} {
		t.Run("qdisc="+qdisc, func(t *testing.T) { testDHCPPortFilters(t, newPortLab(t, qdisc)) })
	}
}

func testDHCPPortFilters(t *testing.T, l *portLab) {
	discover, err := dhcpv4.NewDiscovery(labMAC)
	if err != nil {
		t.Fatal(err)
	}
	dhcp := udpFrame(t, net.IPv4bcast, 68, 67, discover.ToBytes())
	tagged := append(append(append([]byte(nil), dhcp[:12]...), 0x81, 0x00, 0x00, 0x07), dhcp[12:]...)
	twoTags := append(append(append([]byte(nil), dhcp[:12]...), 0x88, 0xa8, 0x00, 0x05, 0x81, 0x00, 0x00, 0x07), dhcp[12:]...)
	for name, f := range map[string][]byte{
		"DHCP discover":          dhcp,
		"DHCP to a server":       udpFrame(t, net.IPv4(192, 0, 2, 1), 68, 67, discover.ToBytes()),
		"DHCP from another port": udpFrame(t, net.IPv4bcast, 5000, 67, discover.ToBytes()),
		"UDP with IP options":    withOptions(udpFrame(t, net.IPv4bcast, 5353, 5353, []byte("x"))),
		"DHCP under a VLAN tag":  tagged,
		"DHCP under two tags":    twoTags,
	} {
		if _, err := l.g0.WriteTo(f, &packet.Addr{HardwareAddr: f[:6]}); err != nil {
			t.Fatal(err)
		}
		if !seen(l.port, f, 2*time.Second) {
			t.Errorf("%s: not on the DHCP port", name)
		}
		if seen(l.lan0, f, 300*time.Millisecond) {
			t.Errorf("%s: reached the LAN", name)
		}
		// By now the loopback has received it too: that copy stays out.
		if seen(l.port, f, 50*time.Millisecond) {
			t.Errorf("%s: on the DHCP port twice", name)
		}
	}
	for name, f := range map[string][]byte{
		"UDP to port 68":                   udpFrame(t, net.IPv4bcast, 67, 68, []byte("x")),
		"DNS":                              udpFrame(t, net.IPv4(192, 0, 2, 1), 40000, 53, []byte("x")),
		"UDP to port 1067":                 udpFrame(t, net.IPv4(192, 0, 2, 1), 40000, 1067, []byte("x")),
		"DAD for a stable-privacy address": ndFrame(135, "::", "fe80::1234:5678:9abc:def0"),
		"IPv6 that reads as UDP at IPv4's offsets": udp6Frame(),
		"ARP": arpFrame(),
	} {
		if _, err := l.g0.WriteTo(f, &packet.Addr{HardwareAddr: f[:6]}); err != nil {
			t.Fatal(err)
		}
		if !seen(l.lan0, f, 2*time.Second) {
			t.Errorf("%s: did not reach the LAN", name)
		}
		if seen(l.port, f, 50*time.Millisecond) {
			t.Errorf("%s: reached the DHCP port", name)
		}
	}
	answer := udpFrame(t, net.IPv4bcast, 67, 68, []byte("answer"))
	copy(answer[6:12], proxyMAC)
	if _, err := l.answers.WriteTo(answer, &packet.Addr{HardwareAddr: answer[:6]}); err != nil {
		t.Fatal(err)
	}
	if !seen(l.g0, answer, 2*time.Second) {
		t.Error("vmrun's answer did not arrive on the guest's link")
	}
	if seen(l.lan0, answer, 300*time.Millisecond) {
		t.Error("vmrun's answer reached the LAN")
	}
}
