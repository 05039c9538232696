package netsetup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// routedLab is a lab whose host has 10.77.0.2/24 on its uplink up0 and a
// default route to the LAN side, 10.77.0.1 (which may run dnsmasq).
func routedLab(t testing.TB) *lab {
	t.Helper()
	l := newLab(t)
	l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
	l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
	// A global /64 on the uplink: every routed set-up shares it with its
	// guest (router advertiser, learner, IPv6 sysctls), so the unwinding
	// and gc tests cover the IPv6 step too.
	l.host.MustRun(t, "ip", "-6", "addr", "add", "fd77::2/64", "dev", "up0", "nodad")
	l.host.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=1")
	l.before = l.host.Links(t)
	// Let IPv6 duplicate address detection finish on up0: its link-local
	// address shows up in the local table only then.
	l.host.WaitNoTentative(t, "up0", 2*time.Minute)
	return l
}

// dnsmasqForRouted serves 10.77.0.50-99 on the LAN side, with 10.77.0.1
// as DNS server in its answers.
func dnsmasqForRouted(t testing.TB, l *lab) *testutil.Process {
	t.Helper()
	p := testutil.StartDnsmasq(t, l.lan, "lan0", "10.77.0.50", "10.77.0.99", "--dhcp-option=option:dns-server,"+lanIP)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", p.Out)
		}
	})
	return p
}

// routedSysctls are the /proc/sys files routed mode may change, and some
// it must not.
var routedSysctls = []string{
	"net/ipv4/conf/up0/forwarding", "net/ipv4/neigh/up0/proxy_delay", "net/ipv4/conf/up0/proxy_arp",
	"net/ipv4/conf/all/forwarding", "net/ipv4/conf/default/forwarding", "net/ipv4/ip_forward",
	"net/ipv6/conf/up0/forwarding", "net/ipv6/conf/all/forwarding", "net/ipv6/conf/up0/proxy_ndp",
	"net/ipv6/conf/up0/accept_ra", "net/ipv6/neigh/up0/proxy_delay",
}

// hostState is everything of the host namespace routed mode may touch:
// sysctls, links, addresses, routes, proxy entries.
func hostState(t testing.TB, l *lab) map[string]string {
	t.Helper()
	st := map[string]string{}
	for _, s := range routedSysctls {
		st[s] = strings.TrimSpace(l.host.MustRun(t, "cat", "/proc/sys/"+s))
	}
	st["links"] = strings.Join(l.host.Links(t), " ")
	st["addrs"] = l.host.MustRun(t, "ip", "-o", "addr", "show")
	st["routes4"] = l.host.MustRun(t, "ip", "-4", "route", "show", "table", "all")
	st["routes6"] = l.host.MustRun(t, "ip", "-6", "route", "show", "table", "all")
	st["proxy"] = l.host.MustRun(t, "ip", "neigh", "show", "proxy")
	return st
}

// assertState fails for every difference from before.
func assertState(t testing.TB, what string, got, before map[string]string) {
	t.Helper()
	for k, v := range before {
		if got[k] != v {
			t.Errorf("%s: %s is\n%s\nwas\n%s", what, k, got[k], v)
		}
	}
}

// noticeIP returns the address of the first "the guest gets ADDR" notice.
func noticeIP(t testing.TB, notices []string) net.IP {
	t.Helper()
	re := regexp.MustCompile(`^routed: the guest gets (\S+) `)
	for _, n := range notices {
		if m := re.FindStringSubmatch(n); m != nil {
			return net.ParseIP(m[1]).To4()
		}
	}
	t.Fatalf("no notice names the guest's address: %q", notices)
	return nil
}

// collector gathers trace output (Notice, Event) safely across goroutines.
type collector struct {
	mu              sync.Mutex
	notices, events []string
	wake            chan struct{} // closed and replaced on each notice or event
}

func (c *collector) trace(ctx context.Context) context.Context {
	return netsetup.WithTrace(ctx, &netsetup.Trace{
		Notice: func(m string) { c.add(&c.notices, m) },
		Event:  func(m string) { c.add(&c.events, m) },
	})
}

func (c *collector) add(to *[]string, m string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*to = append(*to, m)
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

// changed returns a channel closed at the next notice or event.
func (c *collector) changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	return c.wake
}

func (c *collector) all() (notices, events []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.notices...), append([]string(nil), c.events...)
}

// TestRoutedApply: the guest's address is leased upstream from dnsmasq on
// the LAN; a fake guest on the tap takes it from vmrun's responder (a /32
// with 169.254.0.1 and option 121), pings the LAN, and the LAN and the
// host ping it (proxy ARP). Undo leaves the host exactly as before.
func TestRoutedApply(t *testing.T) {
	l := routedLab(t)
	t.Parallel()
	dm := dnsmasqForRouted(t, l)
	before := hostState(t, l)
	// One queue: the fake guest reads one fd, and the tap spreads frames
	// to the guest over all queues.
	p := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Name: "rt-apply", Queues: 1})
	if p.Parent != "up0" || p.GuestAddr != netsetup.GuestAddrUpstream || p.LinkName != netsetup.LinkName("rt-apply", netsetup.RoleTap) {
		t.Fatalf("plan %+v", p)
	}
	rec := &memRecorder{}
	var c collector
	a, err := l.apply(t, c.trace(ctxT(t, 60*time.Second)), p, rec)
	if err != nil {
		t.Fatal(err)
	}
	notices, _ := c.all()
	t.Logf("notices: %q", notices)
	ip := noticeIP(t, notices)
	if !strings.Contains(notices[0], "leased from 10.77.0.1 with client-id vmrun-rt-apply") || ip[3] < 50 || ip[3] > 99 {
		t.Errorf("guest address %s: %q", ip, notices[0])
	}
	if a.Backend != "tap" || len(a.Files) != 1 || a.MAC.String() != p.MAC.String() || a.LinkName != p.LinkName || a.MTU != 1500 {
		t.Errorf("attachment %+v", a)
	}
	for i, f := range a.Files {
		if got := fdLinkName(t, f); got != p.LinkName {
			t.Errorf("queue %d belongs to %q", i, got)
		}
	}
	checkRoutedKernelState(t, l, p, ip)
	kinds := map[string]int{}
	for _, o := range rec.objects() {
		kinds[o.Kind]++
	}
	// sysctls: IPv4 forwarding and proxy_delay on up0, forwarding on the
	// tap; IPv6 accept_ra, forwarding, proxy_ndp and proxy_delay.
	if want := map[string]int{"link": 1, "addr": 2, "sysctl": 7, "route": 1, "neigh": 1}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("recorded %v, want %v: %+v", kinds, want, rec.objects())
	}

	g := fakeguest.New(a.Files[0], a.MAC, true)
	defer g.Close()
	ctx := ctxT(t, 60*time.Second)
	lease, err := g.DHCP(ctx)
	if err != nil {
		t.Fatalf("guest DHCP: %v", err)
	}
	checkRoutedGuestLease(t, lease, ip, net.ParseIP(lanIP).To4())
	if err := g.PingVia(ctx, net.ParseIP(netsetup.RoutedGateway), net.ParseIP(lanIP)); err != nil {
		t.Fatalf("guest → LAN: %v", err)
	}
	if err := l.lan.Ping(ip.String(), 20*time.Second); err != nil {
		t.Fatalf("LAN → guest: %v", err)
	}
	up0, _ := l.link(t, "up0")
	if out := l.lan.MustRun(t, "ip", "neigh", "show", ip.String()); !strings.Contains(out, up0.Attrs().HardwareAddr.String()) {
		t.Errorf("the LAN does not see the guest at the host's MAC %s (proxy ARP):\n%s", up0.Attrs().HardwareAddr, out)
	}
	if err := l.host.Ping(ip.String(), 20*time.Second); err != nil {
		t.Fatalf("host → guest: %v", err)
	}
	checkRoutedIPv6(t, l, &c, g, p.LinkName, netip.MustParseAddr("fd77::abcd"))
	// The router advertiser and the IPv6 learner fail, are restarted, and
	// serve again: a solicitation is answered, a new address is routed.
	killService(t, a, &c, hostnet.ServiceRA)
	killService(t, a, &c, hostnet.ServiceLearn6)
	checkRoutedIPv6(t, l, &c, g, p.LinkName, netip.MustParseAddr("fd77::abce"))
	// (The counter counts after the reply is sent: the last one may not
	// be counted yet.)
	if g.EchoReplies.Load() == 0 {
		t.Error("the guest answered no echo request: who did?")
	}

	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	if err := a.Undo(); err != nil {
		t.Errorf("second Undo: %v", err)
	}
	if _, err := a.Files[0].Write([]byte{0}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("queue fd still open after Undo: %v", err)
	}
	if objs := rec.objects(); len(objs) != 0 {
		t.Errorf("still recorded after Undo: %+v", objs)
	}
	assertState(t, "after Undo", hostState(t, l), before)
	if _, err := dm.Out.WaitFor(`DHCPRELEASE\(lan0\) `+regexp.QuoteMeta(ip.String()), time.Minute); err != nil {
		t.Errorf("the lease was not released: %v", err)
	}
}

// checkRoutedKernelState checks the host side of a routed guest at ip.
func checkRoutedKernelState(t *testing.T, l *lab, p netsetup.Plan, ip net.IP) {
	t.Helper()
	link, err := l.link(t, p.LinkName)
	if err != nil {
		t.Fatal(err)
	}
	la := link.Attrs()
	if _, ok := link.(*netlink.Tuntap); !ok || la.MasterIndex != 0 || la.Flags&net.FlagUp == 0 || la.Alias != netsetup.OwnerAlias(p.Name) {
		t.Errorf("tap %s: %s, master #%d, flags %v, alias %q; want an up tap on no bridge", p.LinkName, link.Type(), la.MasterIndex, la.Flags, la.Alias)
	}
	if bytes.Equal(la.HardwareAddr, p.MAC) {
		t.Errorf("the tap has the guest's MAC %s", p.MAC)
	}
	addrs := l.host.MustRun(t, "ip", "-o", "addr", "show", "dev", p.LinkName)
	for _, want := range []string{"inet 169.254.0.1/32 scope link", "inet6 fe80::1/64"} {
		if !strings.Contains(addrs, want) {
			t.Errorf("tap addresses lack %q:\n%s", want, addrs)
		}
	}
	if strings.Count(addrs, "inet6") != 1 {
		t.Errorf("the host has more IPv6 on the tap than fe80::1:\n%s", addrs)
	}
	if out := l.host.MustRun(t, "ip", "-4", "route", "show", ip.String()+"/32"); !strings.Contains(out, ip.String()+" dev "+p.LinkName) {
		t.Errorf("no /32 route to %s via the tap: %q", ip, out)
	}
	if out := l.host.MustRun(t, "ip", "neigh", "show", "proxy"); !strings.Contains(out, ip.String()+" dev up0 proxy") {
		t.Errorf("no proxy ARP entry for %s on up0: %q", ip, out)
	}
	for path, want := range map[string]string{
		"net/ipv4/conf/up0/forwarding": "1", "net/ipv4/neigh/up0/proxy_delay": "0", "net/ipv4/conf/" + p.LinkName + "/forwarding": "1",
		"net/ipv4/conf/all/forwarding": "0", "net/ipv4/conf/up0/proxy_arp": "0",
	} {
		if got := strings.TrimSpace(l.host.MustRun(t, "cat", "/proc/sys/"+path)); got != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
}

// checkRoutedGuestLease checks what vmrun's responder told the guest.
func checkRoutedGuestLease(t *testing.T, lease fakeguest.Lease, ip, dns net.IP) {
	t.Helper()
	gw := net.ParseIP(netsetup.RoutedGateway).To4()
	if !lease.IP.Equal(ip) || !lease.Mask.Equal(net.IPv4(255, 255, 255, 255)) || !lease.Router.Equal(gw) || !lease.Server.Equal(gw) {
		t.Errorf("lease %s/%v router %s server %s, want %s/32 via %s", lease.IP, lease.Mask, lease.Router, lease.Server, ip, gw)
	}
	// Option 121: 169.254.0.1/32 on the link, then 0.0.0.0/0 via it.
	if want := []byte{32, 169, 254, 0, 1, 0, 0, 0, 0, 0, 169, 254, 0, 1}; !bytes.Equal(lease.Options[121], want) {
		t.Errorf("option 121 %v, want %v", lease.Options[121], want)
	}
	if dns != nil && !bytes.Equal(lease.Options[6], dns.To4()) {
		t.Errorf("DNS option %v, want %s", lease.Options[6], dns)
	}
	if lease.Duration <= 0 || lease.Duration > time.Hour {
		t.Errorf("lease time %s", lease.Duration)
	}
}

// TestRoutedStatic: --guest-ip; no DHCP server on the LAN at all.
func TestRoutedStatic(t *testing.T) {
	l := routedLab(t)
	t.Parallel()
	before := hostState(t, l)
	_, n, _ := net.ParseCIDR("10.77.0.40/24")
	n.IP = net.ParseIP("10.77.0.40")
	p := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Parent: "up0", Name: "rt-static", Queues: 1, GuestIP: n})
	if p.GuestAddr != netsetup.GuestAddrStatic || !p.GuestIP.Equal(n.IP) {
		t.Fatalf("plan %+v", p)
	}
	var c collector
	a, err := l.apply(t, c.trace(ctxT(t, 60*time.Second)), p, &memRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	notices, _ := c.all()
	if ip := noticeIP(t, notices); !ip.Equal(n.IP) {
		t.Errorf("notices %q", notices)
	}
	checkRoutedKernelState(t, l, p, n.IP.To4())
	g := fakeguest.New(a.Files[0], a.MAC, true)
	defer g.Close()
	ctx := ctxT(t, 60*time.Second)
	lease, err := g.DHCP(ctx)
	if err != nil {
		t.Fatalf("guest DHCP: %v", err)
	}
	checkRoutedGuestLease(t, lease, n.IP.To4(), nil)
	if lease.Duration != time.Hour {
		t.Errorf("lease time %s for a static address, want 1h", lease.Duration)
	}
	// The responder fails, is restarted, and answers a new DISCOVER.
	killService(t, a, &c, hostnet.ServiceDHCP)
	if lease, err := g.DHCP(ctx); err != nil || !lease.IP.Equal(n.IP.To4()) {
		t.Fatalf("guest DHCP after the responder was restarted: %+v, %v", lease, err)
	}
	if err := g.PingVia(ctx, net.ParseIP(netsetup.RoutedGateway), net.ParseIP(lanIP)); err != nil {
		t.Fatalf("guest → LAN: %v", err)
	}
	if err := l.lan.Ping("10.77.0.40", 20*time.Second); err != nil {
		t.Fatalf("LAN → guest: %v", err)
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	assertState(t, "after Undo", hostState(t, l), before)
}

// TestRoutedTwoGuestsShareTheUplink: the uplink's sysctls stay set while
// another routed guest still uses the uplink, whichever stops first, and
// are restored when the last one stops.
func TestRoutedTwoGuestsShareTheUplink(t *testing.T) {
	l := routedLab(t)
	t.Parallel()
	before := hostState(t, l)
	fwd := "/proc/sys/net/ipv4/conf/up0/forwarding"
	root := t.TempDir() // both VMs' runtime directories, as under /run/vmrun
	apply := func(name, addr string) (*netsetup.Attachment, *fakeguest.Guest) {
		_, n, _ := net.ParseCIDR(addr + "/24")
		n.IP = net.ParseIP(addr)
		p := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Name: name, Queues: 1, GuestIP: n})
		d, _, err := rundir.Create(root, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Remove() })
		a, err := l.apply(t, ctxT(t, 60*time.Second), p, d)
		if err != nil {
			t.Fatal(err)
		}
		g := fakeguest.New(a.Files[0], a.MAC, true)
		t.Cleanup(func() { g.Close() })
		g.SetIP(n.IP)
		return a, g
	}
	a1, _ := apply("rt-one", "10.77.0.41")
	a2, g2 := apply("rt-two", "10.77.0.42")
	if err := a1.Undo(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(l.host.MustRun(t, "cat", fwd)); got != "1" {
		t.Fatalf("forwarding on up0 is %s after the first guest stopped; the second one still needs it", got)
	}
	l.lan.MustRun(t, "ip", "neigh", "flush", "dev", "lan0")
	if err := l.lan.Ping("10.77.0.42", 20*time.Second); err != nil {
		t.Fatalf("LAN → second guest after the first stopped: %v", err)
	}
	if g2.EchoReplies.Load() == 0 {
		t.Error("the second guest answered no echo request")
	}
	if err := a2.Undo(); err != nil {
		t.Fatal(err)
	}
	assertState(t, "after both stopped", hostState(t, l), before)
}

// TestRoutedRefusals: what Apply itself refuses, leaving nothing behind.
func TestRoutedRefusals(t *testing.T) {
	l := routedLab(t)
	t.Parallel()
	before := hostState(t, l)
	_, n, _ := net.ParseCIDR("10.77.0.43/24")
	n.IP = net.ParseIP("10.77.0.43")
	p := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Name: "rt-refuse", Queues: 1, GuestIP: n})

	// Someone else answers for the address already: refused, left alone.
	l.host.MustRun(t, "ip", "neigh", "add", "proxy", "10.77.0.43", "dev", "up0")
	rec := &memRecorder{}
	if _, err := l.apply(t, ctxT(t, 30*time.Second), p, rec); !errors.Is(err, netsetup.ErrBadRequest) || !strings.Contains(err.Error(), "already answers ARP for 10.77.0.43") {
		t.Errorf("foreign proxy entry: %v", err)
	}
	if out := l.host.MustRun(t, "ip", "neigh", "show", "proxy"); !strings.Contains(out, "10.77.0.43") {
		t.Errorf("the foreign proxy entry was removed: %q", out)
	}
	l.host.MustRun(t, "ip", "neigh", "del", "proxy", "10.77.0.43", "dev", "up0")
	if len(rec.objects()) != 0 {
		t.Errorf("still recorded: %+v", rec.objects())
	}
	assertState(t, "after the refusal", hostState(t, l), before)

	// No DHCP server on the LAN: one sentence, nothing left.
	up := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Name: "rt-nolease", Queues: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := l.apply(t, ctx, up, rec)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, netsetup.ErrNoLease) {
		t.Errorf("no DHCP server: %v", err)
	}
	assertState(t, "after no lease", hostState(t, l), before)
}

// TestRoutedUnwinds cancels Apply after each of its steps: every failure
// must leave the host as it was and nothing recorded.
func TestRoutedUnwinds(t *testing.T) {
	l := routedLab(t)
	t.Parallel()
	dnsmasqForRouted(t, l)
	before := hostState(t, l)
	p := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Name: "rt-unwind", Queues: 2})
	var steps []string
	for stop := 1; ; stop++ {
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		ctx = netsetup.WithTrace(ctx, &netsetup.Trace{Step: func(s string) {
			if n++; n == stop {
				steps = append(steps, s)
				cancel()
			}
		}})
		rec := &memRecorder{}
		a, err := l.apply(t, ctx, p, rec)
		cancel()
		if err == nil {
			for i, f := range a.Files {
				if got := fdLinkName(t, f); got != p.LinkName {
					t.Errorf("queue %d belongs to %q", i, got)
				}
			}
			if len(a.Files) != 2 {
				t.Errorf("%d queue fds, want 2", len(a.Files))
			}
			if err := a.Undo(); err != nil {
				t.Fatal(err)
			}
			break // cancelled after the last step: Apply had finished
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled after step %d: %v", stop, err)
		}
		if objs := rec.objects(); len(objs) != 0 {
			t.Errorf("cancelled after step %d: still recorded %+v", stop, objs)
		}
		assertState(t, fmt.Sprintf("cancelled after step %d", stop), hostState(t, l), before)
		if t.Failed() {
			break
		}
	}
	t.Logf("cancelled after each of %v", steps)
	assertState(t, "at the end", hostState(t, l), before)
}

// TestRoutedGCAfterKill runs a routed set-up (address leased upstream) in
// a child process, SIGKILLs it after each step (the last one: with a QEMU
// stand-in holding the queue fds), and checks that GC restores the host:
// links, addresses, routes, proxy entries and sysctls. The upstream lease
// is not released: it expires at the server.
func TestRoutedGCAfterKill(t *testing.T) {
	l := routedLab(t)
	t.Parallel()
	dnsmasqForRouted(t, l)
	before := hostState(t, l)
	p := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Name: "gc-routed", Queues: 2})
	var steps []string
	for k := 1; ; k++ {
		step := crashAndGC(t, l, p, k)
		steps = append(steps, step)
		assertState(t, fmt.Sprintf("GC after a kill after step %d (%s)", k, step), hostState(t, l), before)
		if step == "qemu" || t.Failed() {
			break
		}
	}
	t.Logf("killed after each of %v", steps)
}

// TestRoutedLeaseKeptAndMoved: the keeper renews the upstream lease at T1
// (a minute into dnsmasq's shortest lease), which works only if the
// server's unicast answer to the guest's address reaches the host (proxy
// ARP). Then the LAN's DHCP server is replaced by one with another range,
// so the next renewal is refused and the keeper leases a new address;
// route, proxy entry and responder follow, and the guest, asking again,
// gets the new address and is reachable there. Slow (two renewals, about
// two minutes): skipped with -short.
func TestRoutedLeaseKeptAndMoved(t *testing.T) {
	if testing.Short() {
		testutil.Skipf(t, "-short: waits for two DHCP renewals (about two minutes)")
	}
	l := routedLab(t)
	t.Parallel()
	dm := startShortLeaseDnsmasq(t, l, "10.77.0.50", "10.77.0.99")
	before := hostState(t, l)
	p := l.plan(t, netsetup.Request{Mode: netsetup.Routed, Name: "rt-move", Queues: 1})
	var c collector
	rec := &memRecorder{}
	a, err := l.apply(t, c.trace(ctxT(t, 60*time.Second)), p, rec)
	if err != nil {
		t.Fatal(err)
	}
	notices, _ := c.all()
	old := noticeIP(t, notices)
	g := fakeguest.New(a.Files[0], a.MAC, true)
	defer g.Close()
	ctx := ctxT(t, 300*time.Second)
	if lease, err := g.DHCP(ctx); err != nil || !lease.IP.Equal(old) || lease.Duration != time.Minute {
		t.Fatalf("guest lease %+v, %v; want %s for 1m (half of 2m)", lease, err, old)
	}

	// A renewal (not a rebinding or a rebooting client's broadcast request):
	// dnsmasq's unicast answer to the guest's address reached the host.
	waitTrace(t, &c, "renew of "+old.String()+":", 150*time.Second)
	waitTrace(t, &c, "the lease of "+old.String()+" was extended", time.Minute)
	// dnsmasq logged the ACK before sending it; its output may still be
	// on its way to the test.
	if _, err := dm.Out.WaitFor(`DHCPACK\(lan0\) `+regexp.QuoteMeta(old.String()), time.Minute); err != nil {
		t.Fatalf("dnsmasq did not acknowledge a renewal: %v", err)
	}
	// The keeper fails and is restarted: it is the keeper that follows
	// the refusal below.
	if !a.Services.Fail(hostnet.ServiceKeeper, errors.New("killed by the test")) {
		t.Fatal("no lease keeper runs")
	}
	waitTrace(t, &c, hostnet.ServiceKeeper+" failed (killed by the test); restarting it", time.Minute)
	// Another server, another range: the next renewal of old is refused.
	if err := dm.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	startShortLeaseDnsmasq(t, l, "10.77.0.150", "10.77.0.199")
	moved := waitTrace(t, &c, "moved the guest from "+old.String(), 240*time.Second)
	lease, err := g.DHCP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ip := lease.IP.To4()
	if ip[3] < 150 || !strings.Contains(moved, " to "+ip.String()+";") {
		t.Fatalf("the guest got %s; notice %q", ip, moved)
	}
	checkRoutedKernelState(t, l, p, ip)
	if out := l.host.MustRun(t, "ip", "neigh", "show", "proxy") + l.host.MustRun(t, "ip", "route"); strings.Contains(out, old.String()+" ") {
		t.Errorf("the old address %s is still routed or proxied:\n%s", old, out)
	}
	if err := l.lan.Ping(ip.String(), 20*time.Second); err != nil {
		t.Fatalf("LAN → guest at its new address: %v", err)
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	if objs := rec.objects(); len(objs) != 0 {
		t.Errorf("still recorded after Undo: %+v", objs)
	}
	assertState(t, "after Undo", hostState(t, l), before)
}

// startShortLeaseDnsmasq runs dnsmasq on the LAN side like
// testutil.StartDnsmasq, with dnsmasq's shortest lease time, two minutes.
func startShortLeaseDnsmasq(t *testing.T, l *lab, first, last string) *testutil.Process {
	t.Helper()
	bin := testutil.RequireCmd(t, "dnsmasq")
	dir := t.TempDir()
	p := l.lan.Start(t, bin, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--port=0", "--bind-interfaces", "--interface=lan0", "--except-interface=lo",
		"--dhcp-range="+first+","+last+",255.255.255.0,2m",
		"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid",
		"--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility=-", "--user=root")
	if _, err := p.Out.WaitFor(`DHCP, IP range`, time.Minute); err != nil {
		t.Fatalf("dnsmasq did not start: %v\n%s", err, p.Out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq %s-%s:\n%s", first, last, p.Out)
		}
	})
	return p
}

// waitTrace waits for a notice or event containing s and returns it.
func waitTrace(t *testing.T, c *collector, s string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		wake := c.changed() // before reading: a message added meanwhile wakes us
		notices, events := c.all()
		for _, m := range append(notices, events...) {
			if strings.Contains(m, s) {
				return m
			}
		}
		select {
		case <-wake:
		case <-timeout:
			t.Fatalf("no notice or event %q within %s:\nnotices %q\nevents %q", s, d, notices, events)
			return ""
		}
	}
}
