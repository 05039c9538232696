package netsetup_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
)

// TestMacvtapNoHostLink: with --no-host-link, a macvtap guest whose
// parent holds the host's IPv4 and IPv6 addresses (where, without it, a
// host link would route to the guest's addresses and proxy NDP for the
// host's: netsetup/tap's TestMacvtapHostLink and TestMacvtapHostLinkIPv6)
// gets no host link, no route to its addresses and no proxy entry; it
// still takes a lease from the LAN and talks across it, and Undo leaves
// nothing.
func TestMacvtapNoHostLink(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
	l.host.MustRun(t, "ip", "-6", "addr", "add", "2001:db8:77::2/64", "dev", "up0", "nodad")
	p := l.plan(t, netsetup.Request{Mode: netsetup.Macvtap, Parent: "up0", Name: "mv-nohost", Queues: 1, NoHostLink: true})
	if !p.NoHostLink || !strings.Contains(p.Notice, "not from this host") {
		t.Fatalf("plan: no_host_link %v, notice %q; want true and the notice that the host cannot reach the guest", p.NoHostLink, p.Notice)
	}
	noHostLink(t, l, p, "dev up0", func() {
		if _, err := l.link(t, netsetup.LinkName("mv-nohost", netsetup.RoleShim)); err == nil {
			t.Error("a host link exists with --no-host-link")
		}
	})
}

// TestBridgeNoHostLink: with --no-host-link, a bridge guest on a bridge
// that holds no address of the host's (the host's IPv4 and IPv6 are on
// another link: where, without it, routes through the bridge and its
// proxy NDP would reach the guest — netsetup/tap's TestBridgeHostRoutes
// and TestBridgeHostRoutesIPv6) gets no route to its addresses, no proxy
// entry, and the bridge's sysctls stay as they were; the guest still takes
// a lease from the LAN and talks across it, and Undo leaves nothing.
func TestBridgeNoHostLink(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	l.bridged(t)
	l.host.MustRun(t, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	l.host.MustRun(t, "ip", "link", "set", "other1", "up")
	l.host.MustRun(t, "ip", "addr", "add", "10.78.0.2/24", "dev", "other0")
	l.host.MustRun(t, "ip", "-6", "addr", "add", "2001:db8:78::2/64", "dev", "other0", "nodad")
	l.host.MustRun(t, "ip", "link", "set", "other0", "up")
	l.before = l.host.Links(t)
	sysctls := "cd /proc/sys && cat net/ipv6/conf/br0/forwarding net/ipv6/conf/br0/proxy_ndp net/ipv6/neigh/br0/proxy_delay"
	before := l.host.MustRun(t, "sh", "-c", sysctls)
	p := l.plan(t, netsetup.Request{Mode: netsetup.Bridge, Parent: "br0", Name: "br-nohost", Queues: 1, NoHostLink: true})
	if !p.NoHostLink {
		t.Fatalf("plan %+v: no_host_link false", p)
	}
	noHostLink(t, l, p, "unreachable", func() {
		if got := l.host.MustRun(t, "sh", "-c", sysctls); got != before {
			t.Errorf("the bridge's forwarding, proxy_ndp, proxy_delay: %q, before: %q", got, before)
		}
	})
}

// noHostLink applies plan p (a bridge or macvtap plan with --no-host-link)
// in lab l and checks the attachment: a fake guest takes a lease from
// dnsmasq in the LAN namespace and pings across the LAN; once vmrun has seen
// its IPv4 address (the DHCP ACK) and its IPv6 address (the guest's
// duplicate address detection) — the point after which a host link or
// host routes would have routed them — the host has no route to either
// (its route to the IPv4 address is by way4, what `ip route get` shows
// without one) and no proxy entry; vmrun recorded the guest's link alone.
// check, if given, runs then and after Undo, which must leave no link and
// no record.
func noHostLink(t *testing.T, l *lab, p netsetup.Plan, way4 string, check ...func()) {
	t.Helper()
	testutil.StartDnsmasq(t, l.lan, "lan0", "10.77.0.50", "10.77.0.99", "--no-ping")
	addrs := make(chan netip.Addr, 16)
	ctx := netsetup.WithTrace(ctxT(t, 2*time.Minute), &netsetup.Trace{Addr: func(a netsetup.GuestAddr) {
		if !a.Drop {
			select {
			case addrs <- a.Addr:
			default: // Addr must not block; the test needs the first few
			}
		}
	}})
	rec := &memRecorder{}
	a, err := l.apply(t, ctx, p, rec)
	if err != nil {
		t.Fatal(err)
	}
	checkDatapath(t, l, a)
	v6 := "2001:db8:77::57"
	if _, err := a.Files[0].Write(append(make([]byte, fakeguest.VnetHdrLen), dadProbe(t, a.MAC, "::", v6)...)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for v4 := false; !v4 || !seen[v6]; {
		select {
		case ad := <-addrs:
			seen[ad.String()] = true
			v4 = v4 || ad.Is4()
		case <-ctx.Done():
			t.Fatalf("vmrun saw the guest's addresses %v, want an IPv4 one and %s", seen, v6)
		}
	}
	for ad := range seen {
		fam := "-4"
		if strings.Contains(ad, ":") {
			fam = "-6"
		}
		if r := l.host.MustRun(t, "ip", fam, "route", "show", ad); strings.TrimSpace(r) != "" {
			t.Errorf("a route to the guest's %s with --no-host-link: %s", ad, r)
		}
		if fam == "-4" {
			if r, _ := l.host.Run("ip", "route", "get", ad); !strings.Contains(r, way4) {
				t.Errorf("ip route get %s: %q, want %q (no host link)", ad, r, way4)
			}
		}
	}
	if r := l.host.MustRun(t, "ip", "-6", "neigh", "show", "proxy"); strings.TrimSpace(r) != "" {
		t.Errorf("proxy NDP entries with --no-host-link: %s", r)
	}
	if objs := rec.objects(); len(objs) != 1 || objs[0].Kind != netsetup.ObjLink || objs[0].Name != p.LinkName {
		t.Errorf("recorded %+v, want the guest's link %s alone", objs, p.LinkName)
	}
	for _, c := range check {
		c()
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	if objs := rec.objects(); len(objs) != 0 {
		t.Errorf("still recorded after Undo: %+v", objs)
	}
	for _, c := range check {
		c()
	}
	l.assertClean(t)
}
