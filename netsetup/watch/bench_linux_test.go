package watch

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup"
)

// BenchmarkUplinkEventToDecision moves the default route between the
// rig's two uplinks (a netlink call in the host namespace) and waits for
// the watcher's Switch. It reports, per switch, the time from the burst's
// first kernel event to the decision (the debounce's quiet period,
// detection and Replan: Decision.Latency, median) and from the route
// change's call to the decision arriving (ns/op, mean).
func BenchmarkUplinkEventToDecision(b *testing.B) {
	r := newRig(b)
	r.host.MustRun(b, "ip", "route", "add", "default", "via", "10.82.0.1", "dev", "b0", "metric", "200")
	w := r.watch(b, Config{Request: netsetup.Request{Name: "w"}})
	h, err := netlink.NewHandleAt(r.host.Handle(b))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	a0, err := h.LinkByName("a0")
	if err != nil {
		b.Fatal(err)
	}
	viaA := &netlink.Route{LinkIndex: a0.Attrs().Index, Gw: net.ParseIP("10.81.0.1"), Priority: 100}
	var latency []time.Duration
	b.ResetTimer()
	for i := range b.N {
		change, want := h.RouteDel, "macvtap on b0"
		if i%2 == 1 {
			change, want = h.RouteAdd, "macvtap on a0"
		}
		if err := change(viaA); err != nil {
			b.Fatal(err)
		}
		select {
		case d := <-w.Decisions():
			if d.Action != Switch || d.To.String() != want {
				b.Fatalf("decided %s → %s (%s), want switch → %s", d.Action, d.To, d.Why, want)
			}
			latency = append(latency, d.Latency)
		case <-time.After(bound):
			b.Fatalf("no decision within %v", bound)
		}
	}
	b.StopTimer()
	slices.Sort(latency)
	b.ReportMetric(float64(latency[len(latency)/2].Microseconds())/1000, "median-event-to-decision-ms")
}
