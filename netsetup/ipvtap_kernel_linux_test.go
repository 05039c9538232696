package netsetup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/nested"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The ipvtap tests need a kernel with ipvlan/ipvtap. This machine's has
// none: test/wifi boots the nested rig, which loads ipvtap and runs them
// there — on a veth "LAN" (vethEnv) and on a mac80211_hwsim Wi-Fi station
// associated with an access point in namespace "ap" (wifiEnv).

// Names the rig's Wi-Fi set-up (test/wifi) gives things.
const (
	rigMainNetns = "rigmain" // `ip netns attach rigmain 1`: the rig's own namespace
	rigAPNetns   = "ap"      // the access point's namespace
	rigStation   = "wlan1"   // the station, in rigmain
	rigAPIf      = "wlan0"   // the access point's interface, in ap
	rigAPIP      = "192.168.77.1"
)

// ipvtapEnv is where an ipvtap test runs: a host namespace whose parent
// interface reaches a LAN namespace with a DHCP server.
type ipvtapEnv struct {
	*lab
	parent string // the parent interface, in host
	lanIf  string // the LAN side's interface, in lan
	lanIP  string // the LAN side's address (DHCP server)
	hostIP string // the host's address on the parent
	wifi   bool
	dhcp   *testutil.Process // the LAN's DHCP server, when the test started it
	// bounce takes the parent down, runs change (if any) while it is down,
	// and brings it up again; it returns when the parent runs again.
	bounce func(t testing.TB, change func())
}

// requireIPVtap skips unless the kernel can create ipvtap links (it cannot
// on this project's CI host: test/wifi runs these tests strictly in the rig
// and checks that each of them passed).
func requireIPVtap(t testing.TB, n *testutil.Netns) {
	t.Helper()
	f := detectIn(t, n, netsetup.Request{Mode: netsetup.IPVtap, Parent: "lo"})
	if !f.Caps.IPVtap {
		testutil.SkipElsewhere(t, "test/wifi.TestWiFi", "this kernel cannot create ipvtap links")
	}
}

// vethEnv is a wired LAN: up0 (10.77.0.2/24) in host, lan0 (10.77.0.1/24,
// dnsmasq) in lan.
func vethEnv(t testing.TB) *ipvtapEnv {
	t.Helper()
	l := newLab(t)
	requireIPVtap(t, l.host)
	l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
	l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
	dhcp := testutil.StartDnsmasq(t, l.lan, "lan0", "10.77.0.50", "10.77.0.99", "--no-ping")
	e := &ipvtapEnv{lab: l, parent: "up0", lanIf: "lan0", lanIP: lanIP, hostIP: "10.77.0.2", dhcp: dhcp}
	e.bounce = func(t testing.TB, change func()) {
		l.host.MustRun(t, "ip", "link", "set", "up0", "down")
		if change != nil {
			change()
		}
		l.host.MustRun(t, "ip", "link", "set", "up0", "up")
	}
	return e
}

// wifiEnv is the rig's Wi-Fi LAN (only inside the rig, after test/wifi's
// set-up): the station wlan1 in the rig's namespace, associated with the
// access point wlan0 (192.168.77.1, dnsmasq) in namespace "ap".
func wifiEnv(t testing.TB) *ipvtapEnv {
	t.Helper()
	if !nested.Inside() {
		testutil.SkipElsewhere(t, "test/wifi.TestWiFi", "needs the nested rig's Wi-Fi LAN")
	}
	host := &testutil.Netns{Name: rigMainNetns, Path: filepath.Join("/run/netns", rigMainNetns)}
	ap := &testutil.Netns{Name: rigAPNetns, Path: filepath.Join("/run/netns", rigAPNetns)}
	if !host.Exists() || !ap.Exists() {
		t.Fatalf("the rig's Wi-Fi set-up is missing (%s, %s)", host.Path, ap.Path)
	}
	l := &lab{host: host, lan: ap}
	l.before = host.Links(t)
	out := host.MustRun(t, "ip", "-4", "-o", "addr", "show", "dev", rigStation)
	m := regexp.MustCompile(`inet (\S+)/`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the station has no IPv4 address: %s", out)
	}
	e := &ipvtapEnv{lab: l, parent: rigStation, lanIf: rigAPIf, lanIP: rigAPIP, hostIP: m[1], wifi: true}
	e.bounce = func(t testing.TB, change func()) {
		def := strings.Fields(strings.SplitN(host.MustRun(t, "ip", "route", "show", "default"), "\n", 2)[0])
		host.MustRun(t, "ip", "link", "set", rigStation, "down")
		if change != nil {
			change()
		}
		host.MustRun(t, "ip", "link", "set", rigStation, "up")
		// wpa_supplicant associates again by itself; the default route
		// went with the link (the rig has no DHCP client running).
		waitFor(t, 60*time.Second, "the station to associate again", func() bool {
			out, _ := host.Run("iw", "dev", rigStation, "link")
			return strings.Contains(out, "Connected to")
		})
		if len(def) > 0 {
			host.MustRun(t, "ip", append([]string{"route", "replace"}, def...)...)
		}
	}
	return e
}

// waitFor polls cond (every 100 ms) until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s after %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// notices collects an attachment's Trace notices, one per line, and its
// set-up's events, as "event: " lines.
func notices(ctx context.Context) (context.Context, *testutil.LineBuffer) {
	lb := testutil.NewLineBuffer()
	return netsetup.WithTrace(ctx, &netsetup.Trace{Notice: func(m string) { fmt.Fprintln(lb, m) },
		Event: func(m string) { fmt.Fprintln(lb, "event: "+m) }}), lb
}

func waitNotice(t testing.TB, lb *testutil.LineBuffer, pattern string) []string {
	t.Helper()
	m, err := lb.WaitFor(pattern, 60*time.Second)
	if err != nil {
		t.Fatalf("%v; notices:\n%s", err, lb)
	}
	return m
}

// sysctl reads a sysctl of the host namespace.
func (e *ipvtapEnv) sysctl(t testing.TB, path string) string {
	t.Helper()
	return strings.TrimSpace(e.host.MustRun(t, "cat", "/proc/sys/"+path))
}

// strictRPFilter sets strict reverse-path filtering on the parent (the
// case the shim must loosen) and restores the old value at cleanup.
func (e *ipvtapEnv) strictRPFilter(t testing.TB) string {
	t.Helper()
	path := "net/ipv4/conf/" + e.parent + "/rp_filter"
	old := e.sysctl(t, path)
	e.host.MustRun(t, "sysctl", "-qw", strings.ReplaceAll(path, "/", ".")+"=1")
	t.Cleanup(func() { _, _ = e.host.Run("sysctl", "-qw", strings.ReplaceAll(path, "/", ".")+"="+old) })
	return path
}

// parentMAC is the parent's MAC now.
func (e *ipvtapEnv) parentMAC(t testing.TB) net.HardwareAddr {
	t.Helper()
	l, err := e.link(t, e.parent)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// privateLink finds the ipvtap in vmrun's private namespace: the test
// process holds that namespace's fd, so it is one of /proc/self/fd.
func privateLink(t testing.TB, name string) (*netlink.Handle, netlink.Link) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		p := filepath.Join("/proc/self/fd", fd.Name())
		if target, err := os.Readlink(p); err != nil || !strings.HasPrefix(target, "net:[") {
			continue
		}
		ns, err := netns.GetFromPath(p)
		if err != nil {
			continue
		}
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		ns.Close()
		if err != nil {
			continue
		}
		if l, err := h.LinkByName(name); err == nil {
			return h, l
		}
		h.Close()
	}
	t.Fatalf("no network namespace held by this process has link %s", name)
	return nil, nil
}

// assertNoIPVlanPort proves that no ipvlan link is left on the parent in
// any namespace: the kernel lets a macvlan onto an interface only when it
// has no ipvlan port (EBUSY otherwise). A namespace vmrun dropped is torn
// down asynchronously (no event says when), so this polls, with a
// generous bound.
func (e *ipvtapEnv) assertNoIPVlanPort(t testing.TB) {
	t.Helper()
	if e.wifi {
		return // the station is shared with test/wifi's inner VM
	}
	var last error
	const bound = 2 * time.Minute
	end := time.Now().Add(bound)
	for time.Now().Before(end) {
		last = e.host.Do(func() error {
			la := netlink.NewLinkAttrs()
			la.Name = "vmrtprobe"
			p, err := netlink.LinkByName(e.parent)
			if err != nil {
				return err
			}
			la.ParentIndex = p.Attrs().Index
			mv := &netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}
			if err := netlink.LinkAdd(mv); err != nil {
				return err
			}
			return netlink.LinkDel(mv)
		})
		if last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("an ipvlan link is still on %s %s after the set-up ended: a macvlan cannot join it: %v", e.parent, bound, last)
}

// planIPVtap plans vm: auto on Wi-Fi (it must pick ipvtap), --net ipvtap:PARENT otherwise.
func (e *ipvtapEnv) planIPVtap(t testing.TB, r netsetup.Request) netsetup.Plan {
	t.Helper()
	if !e.wifi {
		r.Mode, r.Parent = netsetup.IPVtap, e.parent
	}
	p := e.plan(t, r)
	if p.Mode != netsetup.IPVtap || p.Parent != e.parent {
		t.Fatalf("plan %+v, want ipvtap on %s", p, e.parent)
	}
	if mac := e.parentMAC(t); p.MAC.String() != mac.String() {
		t.Fatalf("plan MAC %s, want %s's %s", p.MAC, e.parent, mac)
	}
	return p
}

// dadProbe is an IPv6 neighbour solicitation from mac, from src (:: for a
// duplicate address detection probe) for target.
func dadProbe(t *testing.T, mac net.HardwareAddr, src, target string) []byte {
	t.Helper()
	s, tg := net.ParseIP(src), net.ParseIP(target)
	dst := net.ParseIP("ff02::1:ff00:0")
	copy(dst[13:], tg[13:])
	m := icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: &icmp.RawBody{Data: append(make([]byte, 4), tg...)}}
	body, err := m.Marshal(icmp.IPv6PseudoHeader(s, dst))
	if err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 40, 40+len(body))
	h[0] = 6 << 4
	h[4], h[5], h[6], h[7] = byte(len(body)>>8), byte(len(body)), 58, 255
	copy(h[8:24], s.To16())
	copy(h[24:40], dst)
	dmac := net.HardwareAddr{0x33, 0x33, dst[12], dst[13], dst[14], dst[15]}
	f := ethernet.Frame{Destination: dmac, Source: mac, EtherType: ethernet.EtherTypeIPv6, Payload: append(h, body...)}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostLinkLocal is the host's IPv6 link-local address on the parent, or "".
func (e *ipvtapEnv) hostLinkLocal(t *testing.T) string {
	t.Helper()
	out, _ := e.host.Run("ip", "-6", "-o", "addr", "show", "dev", e.parent, "scope", "link")
	if m := regexp.MustCompile(`inet6 (fe80::[0-9a-f:]+)/`).FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// guestClientID is the fake guest's DHCP client identifier: type 0 and a
// name, as the test guest (test/guest/init) sends, unlike the host's.
func guestClientID(name string) []byte { return append([]byte{0}, "vmrun-fake-"+name...) }

func TestIPVtapVeth(t *testing.T) {
	t.Parallel()
	testIPVtapDatapath(t, vethEnv(t))
}

func TestIPVtapWiFi(t *testing.T) {
	testIPVtapDatapath(t, wifiEnv(t))
}

// testIPVtapDatapath applies an ipvtap plan, runs a fake guest on its
// queue fd (the parent's MAC, its own DHCP client identifier, the broadcast
// flag) and checks DESIGN.md's recipe end to end: the guest's lease is
// vmrun's own, registered by vmrun, the guest and the LAN reach each
// other, the host reaches the guest through the shim, and Undo leaves
// nothing.
func testIPVtapDatapath(t *testing.T, e *ipvtapEnv) {
	// rp_filter: strict on the veth LAN, so that vmrun must loosen it; the
	// rig's station is shared with the inner VMs test/wifi boots meanwhile.
	rpPath := ""
	if !e.wifi {
		rpPath = e.strictRPFilter(t)
	}
	neighBefore := e.host.MustRun(t, "ip", "neigh", "show")
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-data", Queues: 2})
	t.Logf("plan: %s on %s, MAC %s: %s", p.Mode, p.Parent, p.MAC, p.Reason)
	rec := &memRecorder{}
	ctx, log := notices(ctxT(t, 3*time.Minute))
	a, err := e.apply(t, ctx, p, rec)
	if err != nil {
		t.Fatal(err)
	}
	if a.MAC.String() != p.MAC.String() || len(a.Files) != 2 {
		t.Errorf("attachment MAC %s with %d queues", a.MAC, len(a.Files))
	}

	// The kernel's view: the ipvtap in vmrun's private namespace, the shim.
	ph, pl := privateLink(t, p.LinkName)
	iv, ok := pl.(*netlink.IPVtap)
	switch {
	case !ok:
		t.Errorf("%s is a %s", p.LinkName, pl.Type())
	case iv.Mode != netlink.IPVLAN_MODE_L2 || iv.Flag != netlink.IPVLAN_FLAG_BRIDGE:
		t.Errorf("ipvtap mode %d flag %d, want L2 + bridge", iv.Mode, iv.Flag)
	case iv.TxQLen <= 0:
		t.Errorf("ipvtap queue length %d", iv.TxQLen)
	case iv.HardwareAddr.String() != p.MAC.String():
		t.Errorf("ipvtap MAC %s", iv.HardwareAddr)
	case iv.RawFlags&unix.IFF_ALLMULTI == 0 || iv.Flags&net.FlagUp == 0:
		t.Errorf("ipvtap flags %v (raw %#x): want up and allmulticast", iv.Flags, iv.RawFlags)
	case iv.Alias != "vmrun:ipv-data":
		t.Errorf("ipvtap alias %q", iv.Alias)
	}
	for i, f := range a.Files {
		if got := fdLinkName(t, f); got != p.LinkName {
			t.Errorf("queue %d belongs to %q, not %q", i, got, p.LinkName)
		}
	}
	shimName := netsetup.LinkName("ipv-data", netsetup.RoleShim)
	shim, err := e.link(t, shimName)
	if err != nil {
		t.Fatalf("shim: %v", err)
	}
	if s, ok := shim.(*netlink.IPVlan); !ok || s.Mode != netlink.IPVLAN_MODE_L2 || s.Alias != "vmrun:ipv-data" || s.Flags&net.FlagUp == 0 {
		t.Errorf("shim %+v", shim)
	}
	if rpPath != "" {
		if got := e.sysctl(t, rpPath); got != "2" {
			t.Errorf("rp_filter on %s is %s while the VM runs, want 2", e.parent, got)
		}
	}

	// The guest takes its own lease; vmrun learns and registers it.
	g := fakeguest.NewQueues(a.Files, a.MAC, true)
	defer g.Close()
	g.SetClientID(guestClientID("ipv-data"))
	start := time.Now()
	lease, err := g.DHCP(ctx)
	if err != nil {
		t.Fatalf("DHCP: %v; notices:\n%s", err, log)
	}
	t.Logf("lease %s from %s in %s", lease.IP, lease.Server, time.Since(start).Round(time.Millisecond))
	if lease.IP.String() == e.hostIP {
		t.Fatalf("the guest got the host's own address %s", lease.IP)
	}
	waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf("%s: guest address %s registered (leased from ", e.parent, lease.IP)))
	addrs, err := ph.AddrList(pl, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != lease.IP.String()+"/32" {
		t.Errorf("addresses on the ipvtap: %v, %v", addrs, err)
	}
	defer ph.Close()

	// IPv6: a duplicate address detection probe registers its target (/128);
	// the host's own EUI-64 link-local, which a guest sharing the MAC
	// derives too, is refused with a warning.
	if err := g.Send(dadProbe(t, a.MAC, "::", "2001:db8:77::57")); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, log, regexp.QuoteMeta(e.parent+": guest address 2001:db8:77::57 registered (IPv6 duplicate address detection)"))
	if ll := e.hostLinkLocal(t); ll != "" {
		if err := g.Send(dadProbe(t, a.MAC, ll, "2001:db8:77::58")); err != nil {
			t.Fatal(err)
		}
		waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf("%s: the guest uses %s, which is %s's own IPv6 link-local address", e.parent, ll, e.parent)))
	}
	addrs6, err := ph.AddrList(pl, netlink.FAMILY_V6)
	if err != nil || len(addrs6) != 1 || addrs6[0].IPNet.String() != "2001:db8:77::57/128" || addrs6[0].Flags&unix.IFA_F_NODAD == 0 {
		t.Errorf("IPv6 addresses on the ipvtap: %+v, %v", addrs6, err)
	}

	// Guest ↔ LAN.
	if err := g.Ping(ctx, net.ParseIP(e.lanIP)); err != nil {
		t.Fatalf("guest → %s: %v", e.lanIP, err)
	}
	e.lan.MustRun(t, "ip", "neigh", "flush", "dev", e.lanIf)
	if err := e.lan.Ping(lease.IP.String(), 20*time.Second); err != nil {
		t.Fatalf("%s → guest: %v", e.lanIP, err)
	}
	neigh := e.lan.MustRun(t, "ip", "neigh", "show", lease.IP.String())
	if !strings.Contains(neigh, "lladdr "+p.MAC.String()) {
		t.Errorf("the LAN side sees the guest at %q, want the parent's MAC %s", neigh, p.MAC)
	}

	// Host ↔ guest, through the shim (and rp_filter loose).
	if route := e.host.MustRun(t, "ip", "route", "get", lease.IP.String()); !strings.Contains(route, "dev "+shimName) || !strings.Contains(route, "src "+e.hostIP) {
		t.Errorf("route to the guest: %s", route)
	}
	if n := e.host.MustRun(t, "ip", "neigh", "show", lease.IP.String(), "dev", shimName); !strings.Contains(n, p.MAC.String()) || !strings.Contains(n, "PERMANENT") {
		t.Errorf("neighbour entry of the guest: %q", n)
	}
	if err := e.host.Ping(lease.IP.String(), 20*time.Second); err != nil {
		t.Fatalf("host → guest: %v", err)
	}
	if err := g.Ping(ctx, net.ParseIP(e.hostIP)); err != nil {
		t.Fatalf("guest → host %s: %v", e.hostIP, err)
	}

	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	if err := a.Undo(); err != nil {
		t.Errorf("second Undo: %v", err)
	}
	e.assertClean(t)
	if rpPath != "" {
		if got := e.sysctl(t, rpPath); got != "1" {
			t.Errorf("rp_filter on %s is %s after Undo, want 1 (restored)", e.parent, got)
		}
	}
	if got := e.host.MustRun(t, "ip", "neigh", "show"); strings.Contains(got, shimName) {
		t.Errorf("neighbour entries left: %s (before: %s)", got, neighBefore)
	}
	if got := e.host.MustRun(t, "ip", "route", "show", "table", "all"); strings.Contains(got, shimName) || strings.Contains(got, lease.IP.String()+" ") {
		t.Errorf("routes left:\n%s", got)
	}
	if objs := rec.objects(); len(objs) != 0 {
		t.Errorf("still recorded after Undo: %+v", objs)
	}
	e.assertNoIPVlanPort(t)
	t.Logf("notices:\n%s", log)
}

// TestIPVtapStatic: --guest-ip is registered at once, with the host route;
// the guest's DHCP (a DISCOVER) is kept from the LAN and not answered (vmrun
// says so once), and the guest keeps working; the host's own address and
// the gateway's are refused.
func TestIPVtapStatic(t *testing.T) {
	t.Parallel()
	e := vethEnv(t)
	_, gip, _ := net.ParseCIDR("10.77.0.42/24")
	gip.IP = net.ParseIP("10.77.0.42").To4()
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-static", GuestIP: gip, Gateway: net.ParseIP(lanIP)})
	if p.GuestIP.String() != "10.77.0.42" {
		t.Fatalf("plan guest IP %v", p.GuestIP)
	}
	ctx, log := notices(ctxT(t, time.Minute))
	a, err := e.apply(t, ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitNotice(t, log, regexp.QuoteMeta("up0: guest address 10.77.0.42 registered (--guest-ip)"))
	// The ipvtap's device number comes from its uevent in the private
	// namespace, not a sysfs mounted there.
	if !strings.Contains(log.String(), "(read from the uevent of vmrun's private namespace)") {
		t.Errorf("the device number was not read from the uevent:\n%s", log)
	}
	g := fakeguest.NewQueues(a.Files, a.MAC, true)
	defer g.Close()
	capt := e.captureBootRequests(t)
	if err := g.Send(dhcpFrame(t, a.MAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, log, regexp.QuoteMeta("up0: the guest sends DHCP (DISCOVER), but its address is 10.77.0.42 (--guest-ip): vmrun keeps its DHCP from the LAN and answers none"))
	g.SetIP(net.ParseIP("10.77.0.42"))
	if err := e.lan.Ping("10.77.0.42", 20*time.Second); err != nil {
		t.Fatalf("LAN → static guest: %v", err)
	}
	if err := e.host.Ping("10.77.0.42", 20*time.Second); err != nil {
		t.Fatalf("host → static guest: %v", err)
	}
	if got := capt.all(); len(got) != 0 {
		t.Errorf("the static guest's DHCP reached the LAN: %+v", got)
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	e.assertClean(t)

	for _, bad := range []string{e.hostIP, lanIP} {
		q := p
		q.GuestIP = net.ParseIP(bad).To4()
		_, err := e.apply(t, ctxT(t, time.Minute), q, nil)
		if !errors.Is(err, netsetup.ErrBadRequest) {
			t.Errorf("--guest-ip %s: %v, want ErrBadRequest", bad, err)
		}
		e.assertClean(t)
	}
}

// TestIPVtapNoHostLink: --no-host-link makes no shim and leaves rp_filter alone.
func TestIPVtapNoHostLink(t *testing.T) {
	t.Parallel()
	e := vethEnv(t)
	rpPath := e.strictRPFilter(t)
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-nohost", NoHostLink: true})
	a, err := e.apply(t, ctxT(t, time.Minute), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.link(t, netsetup.LinkName("ipv-nohost", netsetup.RoleShim)); err == nil {
		t.Error("a shim exists with --no-host-link")
	}
	if got := e.sysctl(t, rpPath); got != "1" {
		t.Errorf("rp_filter %s with --no-host-link, want 1 untouched", got)
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	e.assertClean(t)
}

// TestIPVtapRefusesForeignMode: another ipvlan link in L3 mode on the parent
// is refused (an L2 ipvtap would switch it), and a macvtap too (EBUSY).
func TestIPVtapRefusesConflicts(t *testing.T) {
	t.Parallel()
	e := vethEnv(t)
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-conflict"})
	e.host.MustRun(t, "ip", "link", "add", "ipvl3", "link", "up0", "type", "ipvlan", "mode", "l3")
	e.lab.before = e.host.Links(t)
	_, err := e.apply(t, ctxT(t, time.Minute), p, nil)
	if !errors.Is(err, netsetup.ErrUnsuitable) || !strings.Contains(err.Error(), "ipvlan link ipvl3 in mode \"l3 bridge\"") {
		t.Errorf("next to an L3 ipvlan: %v", err)
	}
	e.assertClean(t)
	e.host.MustRun(t, "ip", "link", "del", "ipvl3")
	e.host.MustRun(t, "ip", "link", "add", "mvt0", "link", "up0", "type", "macvtap", "mode", "bridge")
	e.lab.before = e.host.Links(t)
	_, err = e.apply(t, ctxT(t, time.Minute), p, nil)
	if !errors.Is(err, netsetup.ErrUnsuitable) || !strings.Contains(err.Error(), "EBUSY") {
		t.Errorf("next to a macvtap: %v", err)
	}
	e.assertClean(t)
}

func TestIPVtapWatchVeth(t *testing.T) {
	t.Parallel()
	testIPVtapWatch(t, vethEnv(t))
}

func TestIPVtapWatchWiFi(t *testing.T) {
	testIPVtapWatch(t, wifiEnv(t))
}

// testIPVtapWatch: the watcher tells the user when the parent's MAC
// changes (and changes back), when the parent goes down and comes back
// (and re-announces the guest: the LAN side sees a gratuitous ARP), and
// when another ipvlan link switches the port out of L2 mode (and back,
// with the host's entry for the guest on the shim, which the switch
// flushes, put back).
func testIPVtapWatch(t *testing.T, e *ipvtapEnv) {
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-watch"})
	ctx, log := notices(ctxT(t, 4*time.Minute))
	a, err := e.apply(t, ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Undo()
	g := fakeguest.NewQueues(a.Files, a.MAC, true)
	defer g.Close()
	g.SetClientID(guestClientID("ipv-watch"))
	lease, err := g.DHCP(ctx)
	if err != nil {
		t.Fatalf("DHCP: %v", err)
	}
	waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf("guest address %s registered", lease.IP)))
	orig := p.MAC.String()

	// MAC randomisation: the parent's MAC changes under the guest.
	other := "02:00:00:aa:bb:cc"
	e.bounce(t, func() { e.host.MustRun(t, "ip", "link", "set", e.parent, "address", other) })
	waitNotice(t, log, regexp.QuoteMeta(e.parent+" lost its link"))
	waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf("%s's MAC changed from %s to %s", e.parent, orig, other))+`.*until vmrun gives it a NIC with the new MAC`)

	// Back to the guest's MAC, and a re-announcement the LAN side sees.
	garp := e.captureGARP(t, lease.IP, p.MAC)
	e.bounce(t, func() { e.host.MustRun(t, "ip", "link", "set", e.parent, "address", orig) })
	waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf("%s's MAC is %s again", e.parent, orig)))
	waitNotice(t, log, regexp.QuoteMeta(e.parent+" is back: checked the L2 mode and 1 registered address(es)")+`.*re-announced`)
	select {
	case err := <-garp:
		if err != nil {
			t.Fatalf("gratuitous ARP on the LAN side: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no gratuitous ARP for the guest reached the LAN side")
	}
	if err := e.lan.Ping(lease.IP.String(), 30*time.Second); err != nil {
		t.Errorf("LAN → guest after the parent came back: %v", err)
	}

	// Someone adds an ipvtap in L3 mode: the port switches; then back to L2.
	e.host.MustRun(t, "ip", "link", "add", "ivl3", "link", e.parent, "type", "ipvtap")
	t.Cleanup(func() { _, _ = e.host.Run("ip", "link", "del", "ivl3") })
	waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf(`WARNING: the ipvlan port of %s is now in mode "l3 bridge"`, e.parent)))
	// A link that is down makes no event when it changes: the watcher's
	// periodic check finds the port in L2 again.
	e.host.MustRun(t, "ip", "link", "set", "ivl3", "type", "ipvtap", "mode", "l2", "bridge")
	waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf(`the ipvlan port of %s is in mode "l2 bridge" again`, e.parent)))
	shim := netsetup.LinkName("ipv-watch", netsetup.RoleShim)
	if n := e.host.MustRun(t, "ip", "-4", "neigh", "show", lease.IP.String(), "dev", shim); !strings.Contains(n, "PERMANENT") {
		t.Errorf("after the port came back to L2, the host's neighbour entry for the guest on %s is %q, want a permanent one", shim, n)
	}
	e.host.MustRun(t, "ip", "link", "del", "ivl3")
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	// This VM's links are gone. The namespace as a whole is not compared
	// with its state before: in the rig a real vmrun (test/wifi's wifivm,
	// --net auto) runs on the same station beside these tests and follows
	// the changes above (the MAC change makes it re-attach its guest
	// under generation-1 names, vmr<hash>2s), so its links change while
	// this test runs; the rig checks them itself once that VM has stopped.
	own := shim[:len(shim)-1]
	for _, n := range e.host.Links(t) {
		if strings.HasPrefix(n, own) {
			t.Errorf("link %s of this VM left after clean-up", n)
		}
	}
	t.Logf("notices:\n%s", log)
}

// captureGARP listens on the LAN side for a gratuitous ARP announcing ip
// at mac; the channel gets nil when one arrives.
func (e *ipvtapEnv) captureGARP(t *testing.T, ip net.IP, mac net.HardwareAddr) <-chan error {
	t.Helper()
	var c *packet.Conn
	err := e.lan.Do(func() error {
		ifi, err := net.InterfaceByName(e.lanIf)
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := netip.AddrFromSlice(ip.To4())
	ch := make(chan error, 1)
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Minute))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				ch <- err
				return
			}
			var f ethernet.Frame
			var a arp.Packet
			if f.UnmarshalBinary(buf[:n]) != nil || a.UnmarshalBinary(f.Payload) != nil {
				continue
			}
			if a.SenderIP == want && a.TargetIP == want && a.SenderHardwareAddr.String() == mac.String() {
				ch <- nil
				return
			}
		}
	}()
	return ch
}

// TestIPVtapGCAfterKill kills an ipvtap set-up after each step: GC removes
// what was recorded (the ipvtap before its move, the shim, rp_filter), and
// the ipvtap in the private namespace dies with vmrun's process.
func TestIPVtapGCAfterKill(t *testing.T) {
	t.Parallel()
	e := vethEnv(t)
	rpPath := e.strictRPFilter(t)
	_, gip, _ := net.ParseCIDR("10.77.0.43/24")
	gip.IP = net.ParseIP("10.77.0.43").To4()
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-gc", GuestIP: gip, Queues: 2})
	var steps []string
	for k := 1; ; k++ {
		step := crashAndGC(t, e.lab, p, k)
		steps = append(steps, step)
		if got := e.sysctl(t, rpPath); got != "1" {
			t.Errorf("after step %d (%s): rp_filter %s, want 1", k, step, got)
		}
		if out := e.host.MustRun(t, "ip", "route", "show", "10.77.0.43/32"); strings.TrimSpace(out) != "" {
			t.Errorf("after step %d (%s): route left: %s", k, step, out)
		}
		e.assertNoIPVlanPort(t)
		if step == "qemu" || t.Failed() {
			break
		}
	}
	t.Logf("killed after each of %v", steps)
}

// TestIPVtapWithoutKernelSupport runs where the kernel has no ipvtap (this
// machine, and the rig before ipvtap is loaded, with module autoloading
// off: test/wifi): Apply refuses with the fix and leaves nothing.
func TestIPVtapWithoutKernelSupport(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	if f := detectIn(t, l.host, netsetup.Request{Mode: netsetup.IPVtap, Parent: "up0"}); f.Caps.IPVtap {
		testutil.SkipElsewhere(t, "test/wifi.TestWiFi", "this kernel has ipvtap")
	}
	up0, err := l.link(t, "up0")
	if err != nil {
		t.Fatal(err)
	}
	p := netsetup.Plan{Name: "ipv-nok", Mode: netsetup.IPVtap, Parent: "up0", MAC: up0.Attrs().HardwareAddr, Queues: 1,
		LinkName: netsetup.LinkName("ipv-nok", netsetup.RoleIPVtap)}
	rec := &memRecorder{}
	_, err = l.apply(t, ctxT(t, 30*time.Second), p, rec)
	if !errors.Is(err, netsetup.ErrNoKernelSupport) || !strings.Contains(err.Error(), "load the ipvtap module (modprobe ipvtap)") {
		t.Errorf("Apply: %v", err)
	}
	// The ipvtap is made straight in vmrun's private namespace: nothing of
	// it is recorded. The shim, made first, is (and made, where the kernel
	// has ipvlan but no ipvtap); its record goes with it.
	if objs := rec.objects(); len(objs) != 0 {
		t.Errorf("recorded %d, left %+v", rec.records, objs)
	}
	l.assertClean(t)
}
