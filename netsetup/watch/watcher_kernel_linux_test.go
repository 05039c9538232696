package watch

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// bound is how long a test waits for a decision the kernel must cause.
const bound = 20 * time.Second

// rig is a "host" namespace with two wired uplinks, a0 and b0, each a veth
// to its own LAN namespace and subnet (10.81.0.0/24, 10.82.0.0/24); the
// default route leaves through a0.
type rig struct {
	host, lanA, lanB *testutil.Netns
}

func newRig(t testing.TB) *rig {
	t.Helper()
	testutil.RequireRoot(t)
	r := &rig{host: testutil.NewNetns(t, "wh"), lanA: testutil.NewNetns(t, "wa"), lanB: testutil.NewNetns(t, "wb")}
	testutil.Veth(t, r.host, "a0", r.lanA, "lan0")
	testutil.Veth(t, r.host, "b0", r.lanB, "lan0")
	r.lanA.MustRun(t, "ip", "addr", "add", "10.81.0.1/24", "dev", "lan0")
	r.lanB.MustRun(t, "ip", "addr", "add", "10.82.0.1/24", "dev", "lan0")
	r.host.MustRun(t, "ip", "addr", "add", "10.81.0.2/24", "dev", "a0")
	r.host.MustRun(t, "ip", "addr", "add", "10.82.0.2/24", "dev", "b0")
	r.host.MustRun(t, "ip", "route", "add", "default", "via", "10.81.0.1", "dev", "a0", "metric", "100")
	return r
}

// watching is a Watcher on the rig's host namespace, with each detection
// (Nothing included) on det.
type watching struct {
	*Watcher
	det chan Decision
}

func (r *rig) watch(t testing.TB, cfg Config) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ns := r.host.Handle(t)
	cfg.Netns = &ns
	det := make(chan Decision, 256)
	cfg.OnDetect = func(d Decision) { det <- d }
	w, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := w.Err(); err != nil {
			t.Errorf("watch ended with %v", err)
		}
	})
	return &watching{Watcher: w, det: det}
}

// expect runs a command in the host namespace and waits for the decision
// it must cause: the next one the watcher sends.
func (w *watching) expect(t *testing.T, r *rig, cmd string, want Action, to, why string) {
	t.Helper()
	r.host.MustRun(t, "sh", "-c", cmd)
	select {
	case d, ok := <-w.Decisions():
		if !ok {
			t.Fatalf("%s: the watch ended (%v)", cmd, w.Err())
		}
		t.Logf("%s: %s", cmd, d.Line())
		if d.Action != want || d.To.String() != to || !strings.Contains(d.Why, why) {
			t.Fatalf("%s: decided %s → %s (%s), want %s → %s (…%s…)", cmd, d.Action, d.To, d.Why, want, to, why)
		}
	case <-time.After(bound):
		t.Fatalf("%s: no decision within %v, want %s → %s", cmd, bound, want, to)
	}
}

// noise runs a command that must cause detections but no decision: it
// waits for the first detection after it and checks that it decided
// Nothing (a decision would also come first at the next expect).
func (w *watching) noise(t *testing.T, r *rig, cmd string) {
	t.Helper()
	for len(w.det) > 0 {
		<-w.det
	}
	r.host.MustRun(t, "sh", "-c", cmd)
	select {
	case d := <-w.det:
		if d.Action != Nothing {
			t.Fatalf("%s: decided %s → %s (%s), want nothing", cmd, d.Action, d.To, d.Why)
		}
	case <-time.After(bound):
		t.Fatalf("%s: no detection within %v", cmd, bound)
	}
}

// TestWatchAuto moves a --net auto guest's uplink around: noise first,
// then the default route between two LANs, a VPN-like tun, the uplink
// down and up, its carrier lost and back.
func TestWatchAuto(t *testing.T) {
	r := newRig(t)
	w := r.watch(t, Config{Request: netsetup.Request{Name: "w"}})
	if got := w.First.To.String(); got != "macvtap on a0" {
		t.Fatalf("starts on %s, want macvtap on a0", got)
	}
	// What the guest must not notice.
	w.noise(t, r, "ip addr change 10.81.0.2/24 dev a0 valid_lft 300 preferred_lft 300")
	w.noise(t, r, "ip link add x0 type veth peer name x1 && ip link set x0 up && ip link set x1 up && ip addr add 10.99.0.1/24 dev x0")
	w.noise(t, r, "ip route add default via 10.82.0.1 dev b0 metric 200")
	w.noise(t, r, "ip route add default via 10.81.0.1 dev a0 metric 50 && ip route del default via 10.81.0.1 dev a0 metric 100")
	w.noise(t, r, "ip link set a0 address 02:00:00:00:81:02")
	// The default route moves to B and back.
	w.expect(t, r, "ip route del default via 10.81.0.1 dev a0 metric 50", Switch, "macvtap on b0", "the default route moved from a0 to b0")
	w.expect(t, r, "ip route add default via 10.81.0.1 dev a0 metric 100", Switch, "macvtap on a0", "the default route moved from b0 to a0")
	w.expect(t, r, "ip route replace default via 10.81.0.3 dev a0 metric 100", Renew, "macvtap on a0", "the gateway changed from 10.81.0.1 to 10.81.0.3")
	// A VPN's tun takes the traffic, and goes.
	w.expect(t, r, "ip tuntap add dev tun9 mode tun && ip link set tun9 up && ip route add 0.0.0.0/1 dev tun9", Switch, "nat on "+netsetup.NATBridge, "tun9 is not an Ethernet device")
	w.expect(t, r, "ip link del tun9", Switch, "macvtap on a0", "the default route moved from tun9 to a0")
	// The only uplink goes down, comes back up, gets its route back.
	w.noise(t, r, "ip route del default via 10.82.0.1 dev b0 metric 200")
	w.expect(t, r, "ip link set a0 down", Park, "nat on "+netsetup.NATBridge, "no default route any more (it left through a0)")
	w.noise(t, r, "ip link set a0 up")
	w.expect(t, r, "ip route add default via 10.81.0.1 dev a0", Switch, "macvtap on a0", "an uplink is back (a0, ethernet)")
	// The LAN side goes away (a cable pulled, a suspend) and returns.
	w.expect(t, r, "ip -n "+r.lanA.Name+" link set lan0 down", Park, "macvtap on a0", "a0 lost its carrier")
	w.expect(t, r, "ip -n "+r.lanA.Name+" link set lan0 up", Renew, "macvtap on a0", "a0 has its carrier back, the attachment is still valid")
}

// TestWatchExplicit: an explicit --net ipvtap:a0 stays on a0 when the
// default route leaves it, re-registers on a MAC change, parks while a0 is
// down and has the guest renew (its carrier toggled) when it is back.
func TestWatchExplicit(t *testing.T) {
	r := newRig(t)
	r.host.MustRun(t, "ip", "route", "add", "default", "via", "10.82.0.1", "dev", "b0", "metric", "200")
	req := netsetup.Request{Name: "w", Mode: netsetup.IPVtap, Parent: "a0"}
	w := r.watch(t, Config{Request: req, Plan: netsetup.Plan{Name: "w", Mode: netsetup.IPVtap, Parent: "a0", Uplink: "a0", UplinkKind: netsetup.UplinkEthernet}})
	w.noise(t, r, "ip route del default via 10.81.0.1 dev a0 metric 100")
	w.expect(t, r, "ip link set a0 address 02:00:00:00:81:03", Reattach, "ipvtap on a0", "a0's MAC changed from")
	w.expect(t, r, "ip link set a0 down", Park, "ipvtap on a0", "a0 is down; --net ipvtap stays on a0")
	w.expect(t, r, "ip link set a0 up", Renew, "ipvtap on a0", "a0 is back: the guest's carrier is toggled")
}

// TestWatchApplyRefused: a switch that Apply could not carry out leaves the
// guest where it was, and the next change (even an address renewal)
// decides it again from there.
func TestWatchApplyRefused(t *testing.T) {
	r := newRig(t)
	r.host.MustRun(t, "ip", "route", "add", "default", "via", "10.82.0.1", "dev", "b0", "metric", "200")
	var start atomic.Pointer[netsetup.Plan]
	var calls atomic.Int32
	w := r.watch(t, Config{Request: netsetup.Request{Name: "w"}, Apply: func(d Decision) netsetup.Plan {
		if calls.Add(1) == 1 {
			return *start.Load() // refused: the guest stays where it was
		}
		return *d.Plan
	}})
	start.Store(w.First.Plan)
	w.expect(t, r, "ip route del default via 10.81.0.1 dev a0 metric 100", Switch, "macvtap on b0", "the default route moved from a0 to b0")
	w.expect(t, r, "ip addr change 10.82.0.2/24 dev b0 valid_lft 300 preferred_lft 300", Switch, "macvtap on b0", "the default route moved from a0 to b0")
	w.noise(t, r, "ip addr change 10.82.0.2/24 dev b0 valid_lft 200 preferred_lft 200")
	if n := calls.Load(); n != 2 {
		t.Errorf("Apply called %d times, want 2", n)
	}
}

// TestWatchCurrent: the run moved the guest without the watcher (--net
// auto's DHCP verdict: macvtap → routed on the same uplink); the next
// changes are decided from where Current says the guest is: an address
// renewal and the carrier lost and back keep it routed (a carrier back is
// routed's reattach, a fresh routed attachment, not a move back to the
// macvtap the LAN refused); a new gateway is a new LAN, where macvtap is
// tried again.
func TestWatchCurrent(t *testing.T) {
	r := newRig(t)
	var cur atomic.Pointer[netsetup.Plan]
	w := r.watch(t, Config{Request: netsetup.Request{Name: "w"}, Current: func() netsetup.Plan { return *cur.Load() }})
	routed := *w.First.Plan
	routed.Mode = netsetup.Routed
	cur.Store(&routed)
	w.noise(t, r, "ip addr change 10.81.0.2/24 dev a0 valid_lft 300 preferred_lft 300")
	w.expect(t, r, "ip -n "+r.lanA.Name+" link set lan0 down", Park, "routed on a0", "a0 lost its carrier")
	w.expect(t, r, "ip -n "+r.lanA.Name+" link set lan0 up", Reattach, "routed on a0", "routed mode leases the guest's address upstream again")
	w.expect(t, r, "ip route replace default via 10.81.0.3 dev a0", Switch, "macvtap on a0", "the gateway changed from 10.81.0.1 to 10.81.0.3")
}

// TestWatchResubscribes: when a notification socket fails (as on ENOBUFS,
// events lost), the watcher subscribes again, looks again, and goes on
// deciding.
func TestWatchResubscribes(t *testing.T) {
	r := newRig(t)
	r.host.MustRun(t, "ip", "route", "add", "default", "via", "10.82.0.1", "dev", "b0", "metric", "200")
	w := r.watch(t, Config{Request: netsetup.Request{Name: "w"}})
	for len(w.det) > 0 {
		<-w.det
	}
	old := w.ev.Load()
	old.fail(errors.New("no buffer space available (injected)"))
	select {
	case d := <-w.det: // the look after subscribing again
		if d.Action != Nothing {
			t.Fatalf("the look after subscribing again decided %s (%s)", d.Action, d.Why)
		}
	case <-time.After(bound):
		t.Fatal("no detection after the socket failed")
	}
	if w.ev.Load() == old {
		t.Fatal("the watcher did not subscribe again")
	}
	w.expect(t, r, "ip route del default via 10.81.0.1 dev a0 metric 100", Switch, "macvtap on b0", "the default route moved from a0 to b0")
}

// TestWatchBridgeToEthernet: the host's uplink was a bridge (a0 its port,
// the address and default route on br0: the guest on a tap in br0); the
// bridge goes and a0 carries the address and route itself (undocking from
// a bridged set-up): the guest moves to a macvtap on a0.
func TestWatchBridgeToEthernet(t *testing.T) {
	r := newRig(t)
	r.host.MustRun(t, "sh", "-c", `ip -batch - <<EOF
link add br0 type bridge
link set a0 master br0
link set br0 up
addr del 10.81.0.2/24 dev a0
addr add 10.81.0.2/24 dev br0
route add default via 10.81.0.1 dev br0 metric 100
EOF`)
	w := r.watch(t, Config{Request: netsetup.Request{Name: "w"}})
	if got := w.First.To.String(); got != "bridge on br0" {
		t.Fatalf("starts on %s, want bridge on br0", got)
	}
	w.expect(t, r, `ip -batch - <<EOF
link set a0 nomaster
link del br0
addr add 10.81.0.2/24 dev a0
route add default via 10.81.0.1 dev a0 metric 100
EOF`, Switch, "macvtap on a0", "the default route moved from br0 to a0 (ethernet)")
}
