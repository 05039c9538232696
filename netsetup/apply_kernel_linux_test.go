package netsetup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/gc"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"golang.org/x/sys/unix"
)

// fdLinkName asks a tap/macvtap queue fd which link it belongs to (TUNGETIFF).
func fdLinkName(t testing.TB, f *os.File) string {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		t.Fatal(err)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) }); err != nil {
		t.Fatal(err)
	}
	if ioErr != nil {
		t.Fatalf("TUNGETIFF: %v", ioErr)
	}
	return ifr.Name()
}

func TestMacvtapApply(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	p := macvtapPlan(t, l, "mv-apply", 2)
	rec := &memRecorder{}
	var steps []string
	ctx := netsetup.WithTrace(ctxT(t, 30*time.Second), &netsetup.Trace{Step: func(s string) { steps = append(steps, s) }})
	a, err := l.apply(t, ctx, p, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steps: %v", steps)
	if a.Backend != "tap" || len(a.Files) != 2 || len(a.VhostFiles) != 0 || a.MAC.String() != p.MAC.String() || a.MTU != 1500 || a.LinkName != p.LinkName {
		t.Errorf("attachment %+v", a)
	}
	link, err := l.link(t, p.LinkName)
	if err != nil {
		t.Fatal(err)
	}
	mv, ok := link.(*netlink.Macvtap)
	if !ok {
		t.Fatalf("%s is a %s", p.LinkName, link.Type())
	}
	la := mv.Attrs()
	up0, _ := l.link(t, "up0")
	switch {
	case mv.Mode != netlink.MACVLAN_MODE_BRIDGE:
		t.Errorf("mode %v, want bridge", mv.Mode)
	case la.TxQLen <= 0:
		t.Errorf("tx queue length %d: every frame to the guest would be dropped", la.TxQLen)
	case la.HardwareAddr.String() != p.MAC.String():
		t.Errorf("macvtap MAC %s, plan MAC %s", la.HardwareAddr, p.MAC)
	case la.Alias != "vmrun:mv-apply":
		t.Errorf("alias %q", la.Alias)
	case la.ParentIndex != up0.Attrs().Index:
		t.Errorf("parent #%d, want up0 #%d", la.ParentIndex, up0.Attrs().Index)
	case la.Flags&net.FlagUp == 0:
		t.Error("macvtap is down")
	}
	for i, f := range a.Files {
		if got := fdLinkName(t, f); got != p.LinkName {
			t.Errorf("queue %d belongs to %q, not %q", i, got, p.LinkName)
		}
	}
	assertNoHostIPv6(t, l, p.LinkName)
	// The macvtap, then its host link (netsetup/tap's TestMacvtapHostLink has the rest).
	if objs := rec.objects(); len(objs) != 2 || objs[0].Kind != netsetup.ObjLink || objs[0].Name != p.LinkName || objs[0].Detail["alias"] != "vmrun:mv-apply" ||
		objs[1].Kind != netsetup.ObjLink || objs[1].Name != netsetup.LinkName("mv-apply", netsetup.RoleShim) || objs[1].Detail["type"] != "macvlan" {
		t.Errorf("recorded %+v", objs)
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
	l.assertClean(t)
}

func TestTapApply(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	l.bridged(t)
	l.host.MustRun(t, "ip", "link", "set", "br0", "mtu", "1400")
	p := l.plan(t, netsetup.Request{Mode: netsetup.Bridge, Parent: "br0", Name: "tap-apply", Queues: 3})
	if p.Parent != "br0" || p.Queues != 3 {
		t.Fatalf("plan %+v", p)
	}
	rec := &memRecorder{}
	a, err := l.apply(t, ctxT(t, 30*time.Second), p, rec)
	if err != nil {
		t.Fatal(err)
	}
	link, err := l.link(t, p.LinkName)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := l.link(t, "br0")
	la := link.Attrs()
	if _, ok := link.(*netlink.Tuntap); !ok {
		t.Errorf("%s is a %s", p.LinkName, link.Type())
	}
	if la.MasterIndex != br.Attrs().Index || la.MTU != 1400 || la.Flags&net.FlagUp == 0 || la.Alias != "vmrun:tap-apply" {
		t.Errorf("tap: master #%d (br0 #%d) mtu %d flags %v alias %q", la.MasterIndex, br.Attrs().Index, la.MTU, la.Flags, la.Alias)
	}
	if la.HardwareAddr[0] != 0xfe || la.HardwareAddr[5] != p.MAC[5] {
		t.Errorf("tap's own MAC %s should be the guest's %s with fe: first", la.HardwareAddr, p.MAC)
	}
	if br.Attrs().MTU != 1400 {
		t.Errorf("bridge MTU changed to %d", br.Attrs().MTU)
	}
	if len(a.Files) != 3 || a.MTU != 1400 {
		t.Errorf("attachment files %d MTU %d", len(a.Files), a.MTU)
	}
	for i, f := range a.Files {
		if got := fdLinkName(t, f); got != p.LinkName {
			t.Errorf("queue %d belongs to %q", i, got)
		}
	}
	assertNoHostIPv6(t, l, p.LinkName)
	// A non-persistent tap goes away when its last fd closes: no Undo
	// needed. (A child forked meanwhile by a parallel test holds copies of
	// the fds until it execs: the tap goes when it does.)
	gone := awaitLinkGone(t, l, p.LinkName)
	a.CloseFiles()
	gone()
	if err := a.Undo(); err != nil {
		t.Errorf("Undo after the tap vanished: %v", err)
	}
	if objs := rec.objects(); len(objs) != 0 {
		t.Errorf("still recorded after Undo: %+v", objs)
	}
	l.assertClean(t)
}

// assertNoHostIPv6 checks that the host configured no IPv6 address on the
// guest's link (it would talk on the LAN with the guest's MAC). It first
// waits for the kernel's own sign that addrconf handled the link being
// ready (up, with carrier): until then, "no address" proves nothing.
func assertNoHostIPv6(t *testing.T, l *lab, name string) {
	t.Helper()
	awaitAddrconf(t, l, name)
	if out := strings.TrimSpace(l.host.MustRun(t, "ip", "-6", "addr", "show", "dev", name)); out != "" {
		t.Errorf("the host has IPv6 on %s:\n%s", name, out)
	}
	if out := l.host.MustRun(t, "ip", "-d", "link", "show", name); !strings.Contains(out, "addrgenmode none") {
		t.Errorf("%s: addrgenmode is not none:\n%s", name, out)
	}
}

// awaitLinkGone subscribes to link updates in the lab's host namespace and
// returns a function that waits until name no longer exists (its deletion
// notice, or already gone), within a generous bound.
func awaitLinkGone(t *testing.T, l *lab, name string) func() {
	t.Helper()
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	h := l.host.Handle(t)
	if err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatalf("subscribe to link updates: %v", err)
	}
	return func() {
		t.Helper()
		const bound = time.Minute
		timeout := time.After(bound)
		for {
			if _, err := l.link(t, name); err != nil {
				return
			}
			select {
			case u, ok := <-ch:
				if !ok {
					t.Fatalf("link updates ended while waiting for %s to go", name)
				}
				if u.Header.Type == unix.RTM_DELLINK && u.Attrs().Name == name {
					return
				}
			case <-timeout:
				t.Fatalf("link %s still exists %s after its last fd was closed", name, bound)
			}
		}
	}
}

// ifReady is IF_READY in a link's IPv6 flags (IFLA_INET6_FLAGS): addrconf
// sets it when it handles the link becoming ready, in the same step (under
// the RTNL lock) as it generates the link's own addresses unless
// addrgenmode is none.
const ifReady = 0x80000000

// awaitAddrconf waits until addrconf has handled name becoming ready. It
// polls, with a generous bound: the kernel sends no notification for the
// flag. The link is then set up again, a no-op that takes the RTNL lock, so
// that addrconf's step that set the flag is over when this returns.
func awaitAddrconf(t *testing.T, l *lab, name string) {
	t.Helper()
	const bound = time.Minute
	for deadline := time.Now().Add(bound); ; time.Sleep(10 * time.Millisecond) {
		flags, ok, err := ipv6LinkFlags(l.host, name)
		if err != nil {
			t.Fatalf("IPv6 flags of %s: %v", name, err)
		}
		if !ok || flags&ifReady != 0 {
			break // no IPv6 on the link at all, or addrconf has run
		}
		if time.Now().After(deadline) {
			t.Fatalf("addrconf did not handle %s becoming ready (IF_READY in its IPv6 flags %#x) within %s:\n%s",
				name, flags, bound, l.host.MustRun(t, "ip", "-d", "link", "show", name))
		}
	}
	l.host.MustRun(t, "ip", "link", "set", name, "up")
}

// ipv6LinkFlags returns the IPv6 flags (IFLA_INET6_FLAGS) of a link in ns;
// ok is false when the link has no IPv6 state.
func ipv6LinkFlags(ns *testutil.Netns, name string) (flags uint32, ok bool, err error) {
	err = ns.Do(func() error {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(link.Attrs().Index)
		req.AddData(msg)
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err != nil {
			return fmt.Errorf("RTM_GETLINK %s: %w", name, err)
		}
		if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
			return fmt.Errorf("RTM_GETLINK %s: %d answers", name, len(msgs))
		}
		attrs, err := nl.ParseRouteAttr(msgs[0][unix.SizeofIfInfomsg:])
		if err != nil {
			return err
		}
		for _, a := range attrs {
			if a.Attr.Type&nl.NLA_TYPE_MASK != unix.IFLA_AF_SPEC {
				continue
			}
			fams, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return err
			}
			for _, f := range fams {
				if f.Attr.Type&nl.NLA_TYPE_MASK != unix.AF_INET6 {
					continue
				}
				in6, err := nl.ParseRouteAttr(f.Value)
				if err != nil {
					return err
				}
				for _, v := range in6 {
					if v.Attr.Type&nl.NLA_TYPE_MASK == unix.IFLA_INET6_FLAGS && len(v.Value) == 4 {
						flags, ok = nl.NativeEndian().Uint32(v.Value), true
					}
				}
			}
		}
		return nil
	})
	return flags, ok, err
}

// TestMacvtapDatapath: a fake guest on the macvtap fd takes a DHCP lease
// from dnsmasq in the LAN namespace and pings, and is pinged, across it.
func TestMacvtapDatapath(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	testutil.StartDnsmasq(t, l.lan, "lan0", "10.77.0.50", "10.77.0.99", "--no-ping")
	p := macvtapPlan(t, l, "mv-data", 1)
	a, err := l.apply(t, ctxT(t, 30*time.Second), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkDatapath(t, l, a)
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	l.assertClean(t)
}

// TestTapBridgeDatapath is the same through a tap on a bridge.
func TestTapBridgeDatapath(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	l.bridged(t)
	testutil.StartDnsmasq(t, l.lan, "lan0", "10.77.0.50", "10.77.0.99", "--no-ping")
	p := l.plan(t, netsetup.Request{Mode: netsetup.Bridge, Parent: "br0", Name: "tap-data", Queues: 1})
	a, err := l.apply(t, ctxT(t, 30*time.Second), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkDatapath(t, l, a)
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	l.assertClean(t)
}

func checkDatapath(t *testing.T, l *lab, a *netsetup.Attachment) {
	t.Helper()
	g := fakeguest.New(a.Files[0], a.MAC, true)
	defer g.Close()
	ctx := ctxT(t, 30*time.Second)
	start := time.Now()
	lease, err := g.DHCP(ctx)
	if err != nil {
		t.Fatalf("DHCP: %v", err)
	}
	t.Logf("lease %s/%v from %s in %s", lease.IP, net.IP(lease.Mask), lease.Server, time.Since(start).Round(time.Millisecond))
	if !lease.Server.Equal(net.ParseIP(lanIP)) || lease.IP.To4()[2] != 0 || lease.IP.To4()[3] < 50 {
		t.Errorf("lease %+v", lease)
	}
	if err := g.Ping(ctx, net.ParseIP(lanIP)); err != nil {
		t.Fatalf("guest → LAN: %v", err)
	}
	l.lan.MustRun(t, "ip", "neigh", "flush", "dev", "lan0")
	if err := l.lan.Ping(lease.IP.String(), 10*time.Second); err != nil {
		t.Fatalf("LAN → guest: %v", err)
	}
	if g.ARPReplies.Load() == 0 || g.EchoReplies.Load() == 0 {
		t.Errorf("guest answered %d ARP and %d echo requests", g.ARPReplies.Load(), g.EchoReplies.Load())
	}
}

// TestMacvtapPrivateNode: namespaces B and A each have a macvtap of the
// same name, ifindex and MAC; vmrun runs in A on a thread while /sys shows
// B. The queue fd must still be A's device (as /dev/tapN or a check of /sys
// alone would get wrong).
func TestMacvtapPrivateNode(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	a := testutil.NewNetns(t, "a")
	b := testutil.NewNetns(t, "b")
	p := netsetup.Plan{Name: "twin", Mode: netsetup.Macvtap, Parent: "up0", MAC: netsetup.DeriveMAC("twin"),
		LinkName: netsetup.LinkName("twin", netsetup.RoleMacvtap), Queues: 1}
	for _, n := range []*testutil.Netns{a, b} {
		n.MustRun(t, "ip", "link", "add", "up0", "index", "40", "type", "veth", "peer", "name", "up0p", "index", "41")
		n.MustRun(t, "ip", "link", "set", "up0", "up")
		n.MustRun(t, "ip", "link", "set", "up0p", "up")
	}
	// In a fresh namespace whose other links have explicit indexes, the
	// next link gets ifindex 2: B's decoy takes it too. It sends nothing by
	// itself (no IPv6), so any frame it sends came through the helper's fd.
	b.MustRun(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
	b.MustRun(t, "ip", "link", "add", p.LinkName, "index", "2", "link", "up0", "address", p.MAC.String(), "type", "macvtap", "mode", "bridge")
	b.MustRun(t, "ip", "link", "set", p.LinkName, "up")

	h := startHelper(t, "apply-in", []string{helperNetns + "=" + a.Path, helperPlan + "=" + planJSON(t, p)}, "ip", "netns", "exec", b.Name)
	if err := h.wait(t, helperBound); err != nil {
		t.Fatalf("helper: %v\n%s", err, h.out)
	}
	t.Logf("helper:\n%s", h.out)
	if h.field("IFINDEX") != "2" || h.field("SYSFS-IFINDEX") != "2" {
		t.Fatalf("the twins do not share ifindex 2 (A %q, /sys %q): the test proves nothing", h.field("IFINDEX"), h.field("SYSFS-IFINDEX"))
	}
	if !strings.Contains(h.field("EVENT"), "private sysfs") {
		t.Errorf("device number not read from a private sysfs: %q", h.field("EVENT"))
	}
	if tx, _ := strconv.Atoi(h.field("TX")); tx < 5 {
		t.Errorf("A's macvtap sent %d frames, want 5: the fd is not A's", tx)
	}
	var decoyTx uint64
	if err := b.Do(func() error {
		d, err := netlink.LinkByName(p.LinkName)
		if err == nil {
			decoyTx = d.Attrs().Statistics.TxPackets
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if decoyTx != 0 {
		t.Errorf("B's decoy sent %d frames: the fd was B's device", decoyTx)
	}
}

// TestApplyUnwinds cancels Apply after each of its steps: every failure
// must leave nothing behind and nothing recorded.
func TestApplyUnwinds(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	l.bridged(t)
	plans := map[string]netsetup.Plan{
		"macvtap": l.plan(t, netsetup.Request{Mode: netsetup.Macvtap, Parent: "br0", Name: "unwind-m", Queues: 2}),
		"bridge":  l.plan(t, netsetup.Request{Mode: netsetup.Bridge, Parent: "br0", Name: "unwind-t", Queues: 2}),
	}
	for kind, p := range plans {
		for stop := 1; ; stop++ {
			ctx, cancel := context.WithCancel(context.Background())
			n := 0
			ctx = netsetup.WithTrace(ctx, &netsetup.Trace{Step: func(string) {
				if n++; n == stop {
					cancel()
				}
			}})
			rec := &memRecorder{}
			a, err := l.apply(t, ctx, p, rec)
			cancel()
			if err == nil {
				a.Undo()
				break // cancelled after the last step: Apply had finished
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s, cancelled after step %d: %v", kind, stop, err)
			}
			if objs := rec.objects(); len(objs) != 0 {
				t.Errorf("%s, cancelled after step %d: still recorded %+v", kind, stop, objs)
			}
			l.assertClean(t)
		}
	}
}

// TestConcurrentSetups: 16 VMs set up at once get distinct links and MACs,
// and all clean up.
func TestConcurrentSetups(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	l.bridged(t)
	for _, mode := range []netsetup.Mode{netsetup.Macvtap, netsetup.Bridge} {
		const n = 16
		plans := make([]netsetup.Plan, n)
		for i := range plans {
			plans[i] = l.plan(t, netsetup.Request{Mode: mode, Parent: "br0", Name: fmt.Sprintf("conc-%s-%d", mode, i), Queues: 1})
		}
		atts := make([]*netsetup.Attachment, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range plans {
			wg.Go(func() { atts[i], errs[i] = l.apply(t, context.Background(), plans[i], nil) })
		}
		wg.Wait()
		names, macs, indexes := map[string]bool{}, map[string]bool{}, map[int]bool{}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s VM %d: %v", mode, i, err)
			}
			link, err := l.link(t, plans[i].LinkName)
			if err != nil {
				t.Fatalf("%s VM %d: %v", mode, i, err)
			}
			names[plans[i].LinkName], macs[atts[i].MAC.String()], indexes[link.Attrs().Index] = true, true, true
		}
		if len(names) != n || len(macs) != n || len(indexes) != n {
			t.Errorf("%s: %d names, %d MACs, %d links for %d VMs", mode, len(names), len(macs), len(indexes), n)
		}
		for i := range atts {
			wg.Go(func() { errs[i] = atts[i].Undo() })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s VM %d undo: %v", mode, i, err)
			}
		}
		l.assertClean(t)
	}
}

// TestStaleLinkReplaced: a link left by a crashed run of the same VM (it
// carries the VM's alias) is deleted and recreated.
func TestStaleLinkReplaced(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	p := macvtapPlan(t, l, "stale", 1)
	t.Run("with alias", func(t *testing.T) {
		l.host.MustRun(t, "ip", "link", "add", p.LinkName, "link", "up0", "type", "macvtap", "mode", "vepa")
		l.host.MustRun(t, "ip", "link", "set", p.LinkName, "alias", "vmrun:stale")
		replaceStale(t, l, p)
	})
	t.Run("killed before the alias was set", func(t *testing.T) {
		l.host.MustRun(t, "ip", "link", "add", p.LinkName, "link", "up0", "address", p.MAC.String(), "type", "macvtap", "mode", "vepa")
		replaceStale(t, l, p)
	})
}

func replaceStale(t *testing.T, l *lab, p netsetup.Plan) {
	old, _ := l.link(t, p.LinkName)
	var events []string
	ctx := netsetup.WithTrace(context.Background(), &netsetup.Trace{Event: func(m string) { events = append(events, m) }})
	a, err := l.apply(t, ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	now, err := l.link(t, p.LinkName)
	if err != nil {
		t.Fatal(err)
	}
	if now.Attrs().Index == old.Attrs().Index || now.(*netlink.Macvtap).Mode != netlink.MACVLAN_MODE_BRIDGE {
		t.Errorf("the stale link was not replaced: index %d → %d", old.Attrs().Index, now.Attrs().Index)
	}
	if len(events) == 0 || !strings.Contains(events[0], "stale") {
		t.Errorf("no event about the stale link: %q", events)
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	l.assertClean(t)
}

// TestForeignLinkRefused: a link with the owned name but without vmrun's
// alias is never deleted, neither by Apply nor by Undo.
func TestForeignLinkRefused(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	p := macvtapPlan(t, l, "foreign", 1)
	for _, alias := range []string{"", "vmrun:someone-else", "same MAC, other type"} {
		if alias == "same MAC, other type" {
			l.host.MustRun(t, "ip", "link", "add", p.LinkName, "address", p.MAC.String(), "type", "veth", "peer", "name", "vmrpeer0")
		} else {
			l.host.MustRun(t, "ip", "link", "add", p.LinkName, "link", "up0", "type", "macvtap")
		}
		if strings.HasPrefix(alias, "vmrun:") {
			l.host.MustRun(t, "ip", "link", "set", p.LinkName, "alias", alias)
		}
		before, _ := l.link(t, p.LinkName)
		_, err := l.apply(t, context.Background(), p, nil)
		if !errors.Is(err, netsetup.ErrForeignLink) {
			t.Errorf("alias %q: Apply error %v, want ErrForeignLink", alias, err)
		}
		err = l.host.Do(func() error {
			return gc.Undo([]rundir.Object{netsetup.LinkObject("foreign", p.LinkName, "macvtap", p.MAC)})
		})
		if !errors.Is(err, netsetup.ErrForeignLink) {
			t.Errorf("alias %q: Undo error %v, want ErrForeignLink", alias, err)
		}
		if after, err := l.link(t, p.LinkName); err != nil || after.Attrs().Index != before.Attrs().Index {
			t.Errorf("alias %q: the foreign link was touched: %v", alias, err)
		}
		l.host.MustRun(t, "ip", "link", "del", p.LinkName)
	}
	l.assertClean(t)
}
