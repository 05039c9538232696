package testutil

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping sends ICMP echo requests from inside the namespace to dst (an IPv4
// or IPv6 address) until one is answered or timeout passes. It needs no
// ping binary: it uses a raw ICMP socket (root).
func (n *Netns) Ping(dst string, timeout time.Duration) error {
	ip := net.ParseIP(dst)
	if ip == nil {
		return fmt.Errorf("ping %s: not an IP address", dst)
	}
	v := echoV4
	if ip.To4() == nil {
		v = echoV6
	}
	var c *icmp.PacketConn
	if err := n.Do(func() error {
		var err error
		c, err = icmp.ListenPacket(v.network, v.any)
		return err
	}); err != nil {
		return fmt.Errorf("ping %s in %s: %w", dst, n.Name, err)
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	deadline := time.Now().Add(timeout)
	for seq := 1; time.Now().Before(deadline); seq++ {
		if err := echoOnce(c, v, ip, id, seq); err == nil {
			return nil
		}
	}
	return fmt.Errorf("ping %s in %s: no reply within %s", dst, n.Name, timeout)
}

// echoKind is ICMP echo for one IP version.
type echoKind struct {
	network, any   string
	proto          int
	request, reply icmp.Type
}

var (
	echoV4 = echoKind{"ip4:icmp", "0.0.0.0", 1, ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply}
	echoV6 = echoKind{"ip6:ipv6-icmp", "::", 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply}
)

// echoOnce sends one echo request and waits up to 500 ms for its reply.
func echoOnce(c *icmp.PacketConn, v echoKind, ip net.IP, id, seq int) error {
	msg := icmp.Message{Type: v.request, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("vmrun test")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: ip}); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	end := time.Now().Add(500 * time.Millisecond)
	for {
		if err := c.SetReadDeadline(end); err != nil {
			return err
		}
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		m, err := icmp.ParseMessage(v.proto, buf[:n])
		if err != nil || m.Type != v.reply || !from.(*net.IPAddr).IP.Equal(ip) {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
			return nil
		}
	}
}
