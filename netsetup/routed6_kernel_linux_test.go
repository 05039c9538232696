package netsetup_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// icmp6Frame is an Ethernet frame from mac carrying ICMPv6 message m from
// src to dst (hop limit 255, as neighbour discovery wants).
func icmp6Frame(t *testing.T, mac net.HardwareAddr, src, dst netip.Addr, m icmp.Message) []byte {
	t.Helper()
	body, err := m.Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if err != nil {
		t.Fatal(err)
	}
	h := make([]byte, ipv6.HeaderLen)
	h[0] = 6 << 4
	h[4], h[5], h[6], h[7] = byte(len(body)>>8), byte(len(body)), 58, 255
	copy(h[8:24], src.AsSlice())
	copy(h[24:40], dst.AsSlice())
	d := dst.As16()
	f := ethernet.Frame{Destination: net.HardwareAddr{0x33, 0x33, d[12], d[13], d[14], d[15]}, Source: mac,
		EtherType: ethernet.EtherTypeIPv6, Payload: append(h, body...)}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkRoutedIPv6 plays a guest's IPv6 start on a routed attachment whose
// uplink up0 has fd77::/64: a router solicitation must be answered with
// an advertisement of fd77::/64 (autonomous, not on-link) from fe80::1,
// and a duplicate address detection probe for target (in fd77::/64) must
// get that address a /128 route to the tap and a proxy NDP entry on up0.
func checkRoutedIPv6(t *testing.T, l *lab, c *collector, g *fakeguest.Guest, tap string, target netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ll := netip.MustParseAddr("fe80::5054:ff:fe00:1")
	rs := icmp6Frame(t, g.MAC(), ll, netip.MustParseAddr("ff02::2"),
		icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: make([]byte, 4)}})
	reply, err := g.Exchange(ctx, rs, func(f []byte) bool {
		return len(f) > 54 && f[12] == 0x86 && f[13] == 0xdd && f[20] == 58 && f[54] == byte(ipv6.ICMPTypeRouterAdvertisement)
	}, time.Second)
	if err != nil {
		t.Fatalf("no router advertisement for the guest's solicitation: %v", err)
	}
	if src, _ := netip.AddrFromSlice(reply[22:38]); src != netip.MustParseAddr("fe80::1") {
		t.Errorf("advertisement from %s, want fe80::1", src)
	}
	m, err := ndp.ParseMessage(reply[54:])
	if err != nil {
		t.Fatalf("advertisement: %v", err)
	}
	ra, ok := m.(*ndp.RouterAdvertisement)
	if !ok || ra.RouterLifetime == 0 {
		t.Fatalf("advertisement %+v", m)
	}
	var found bool
	for _, o := range ra.Options {
		if pi, ok := o.(*ndp.PrefixInformation); ok {
			found = found || pi.Prefix == netip.MustParseAddr("fd77::") && pi.PrefixLength == 64 && pi.AutonomousAddressConfiguration && !pi.OnLink
		}
	}
	if !found {
		t.Errorf("advertisement without fd77::/64 (autonomous, not on-link): %+v", ra.Options)
	}

	b := target.As16()
	solicited := netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
	dad := icmp6Frame(t, g.MAC(), netip.IPv6Unspecified(), solicited,
		icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: &icmp.RawBody{Data: append(make([]byte, 4), target.AsSlice()...)}})
	if err := g.Send(dad); err != nil {
		t.Fatal(err)
	}
	// The learner says when it has routed and proxied the address; the
	// kernel must then show both.
	waitTrace(t, c, "IPv6 address "+target.String()+" is routed to it", time.Minute)
	proxy := l.host.MustRun(t, "ip", "-6", "neigh", "show", "proxy", "dev", "up0")
	route := l.host.MustRun(t, "ip", "-6", "route", "show", target.String()+"/128")
	if !strings.Contains(proxy, target.String()) || !strings.Contains(route, "dev "+tap) {
		t.Fatalf("the learner routed %s, but there is no proxy entry on up0 and /128 route via %s: proxy entries %q, route %q", target, tap, proxy, route)
	}
}
