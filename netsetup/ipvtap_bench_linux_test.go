package netsetup_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/nested"
	"github.com/vmrun/vmrun/netsetup"
	"golang.org/x/sys/unix"
)

// benchEnv is the rig's Wi-Fi station inside the nested rig, a veth LAN
// elsewhere (where the kernel has ipvtap).
func benchEnv(b *testing.B) *ipvtapEnv {
	if nested.Inside() {
		return wifiEnv(b)
	}
	return vethEnv(b)
}

// ipvtapBenchPlan is the plan of one benchmarked VM: as `--net auto`
// makes it (the guest's address comes later, leased or learnt), or with a
// static address (--guest-ip), which Apply registers, routes and gives a
// neighbour entry.
func ipvtapBenchPlan(e *ipvtapEnv, mac net.HardwareAddr, i int, static bool) netsetup.Plan {
	name := fmt.Sprintf("ib-%d", i%64)
	p := netsetup.Plan{Name: name, Mode: netsetup.IPVtap, Parent: e.parent, MAC: mac, Queues: 1,
		LinkName: netsetup.LinkName(name, netsetup.RoleIPVtap)}
	if static {
		p.GuestIP = e.benchIP(i % 64)
	}
	return p
}

// benchIP is an address of the env's LAN that nothing else uses.
func (e *ipvtapEnv) benchIP(i int) net.IP {
	ip := net.ParseIP(e.lanIP).To4()
	return net.IPv4(ip[0], ip[1], ip[2], byte(200+i%50))
}

// BenchmarkIPVtapSetup times Apply of an ipvtap attachment per VM: the
// private namespace, the ipvtap (create, verify, up), its queue fd, the
// DHCP port and its filters, the shim, the learner and the watcher; with
// --guest-ip also the guest's address, host route and neighbour entry.
// "auto" is the plan `--net auto` makes, "guest-ip" the static one. Each
// iteration also times a macvtap's Apply (BenchmarkSetup's, on a bridge
// of a lab of its own), so that the two compare side by side whatever the
// load does meanwhile (setup/macvtap, the ratio of the medians; the rig's
// load swings within a run), the two going first in turn.
func BenchmarkIPVtapSetup(b *testing.B) {
	e := benchEnv(b)
	mac := e.parentMAC(b)
	l, plans := benchLab(b)
	for _, static := range []bool{false, true} {
		name := map[bool]string{false: "auto", true: "guest-ip"}[static]
		b.Run(name, func(b *testing.B) { benchIPVtapSetup(b, e, l, plans, mac, static) })
	}
}

func benchIPVtapSetup(b *testing.B, e *ipvtapEnv, l *lab, plans map[string]func(string) netsetup.Plan, mac net.HardwareAddr, static bool) {
	var ds, mds []time.Duration
	steps := map[string][]time.Duration{}
	var order []string // the steps' names, in their order
	ipvtap := func(i int) error {
		p := ipvtapBenchPlan(e, mac, i, static)
		var a *netsetup.Attachment
		err := e.host.Do(func() error {
			start := time.Now()
			last := start
			ctx := netsetup.WithTrace(context.Background(), &netsetup.Trace{Step: func(name string) {
				now := time.Now()
				if _, ok := steps[name]; !ok {
					order = append(order, name)
				}
				steps[name] = append(steps[name], now.Sub(last))
				last = now
			}})
			var err error
			a, err = netsetup.Apply(ctx, p, nil)
			ds = append(ds, time.Since(start))
			return err
		})
		if err != nil {
			return err
		}
		b.StopTimer()
		defer b.StartTimer()
		return a.Undo()
	}
	macvtap := func(i int) error {
		b.StopTimer()
		defer b.StartTimer()
		return l.host.Do(func() error {
			start := time.Now()
			a, err := netsetup.Apply(context.Background(), plans["macvtap"](fmt.Sprintf("bm-%d", i%64)), nil)
			mds = append(mds, time.Since(start))
			if err != nil {
				return err
			}
			return a.Undo()
		})
	}
	// Each goes first in every other iteration: what one's teardown leaves
	// the kernel to finish (a private namespace's clean-up, RCU callbacks)
	// falls on the other as often as on itself.
	for i := 0; i < b.N; i++ {
		first, second := ipvtap, macvtap
		if i%2 == 1 {
			first, second = macvtap, ipvtap
		}
		if err := first(i); err != nil {
			b.Fatal(err)
		}
		if err := second(i); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(ms(median(ds)), "median-ms/setup")
	b.ReportMetric(ms(median(mds)), "median-ms/macvtap")
	b.ReportMetric(float64(median(ds))/float64(median(mds)), "setup/macvtap")
	// The testing package calls a benchmark with b.N = 1 first: its log
	// has one cold iteration's figures, not medians to compare.
	if b.N > 1 {
		for _, name := range order {
			b.Logf("step %-16s median %6.2f ms (of %d)", name, ms(median(steps[name])), b.N)
		}
	}
}

// BenchmarkIPVtapTeardown compares Undo with the kernel's own deletion of
// the same links (RTM_DELLINK of the ipvtap in its namespace and of the
// shim, queue fds closed), alternating the two in one run.
func BenchmarkIPVtapTeardown(b *testing.B) {
	e := benchEnv(b)
	mac := e.parentMAC(b)
	var undo, bare []time.Duration
	for i := 0; i < b.N; i++ {
		p := ipvtapBenchPlan(e, mac, i, true)
		var a *netsetup.Attachment
		if err := e.host.Do(func() error {
			var err error
			a, err = netsetup.Apply(context.Background(), p, nil)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			start := time.Now()
			err := a.Undo()
			undo = append(undo, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			continue
		}
		b.StopTimer()
		b.Cleanup(func() { _ = a.Undo() })
		ph, pl := privateLink(b, p.LinkName)
		var hh *netlink.Handle
		var shim netlink.Link
		if err := e.host.Do(func() error {
			var err error
			if hh, err = netlink.NewHandle(unix.NETLINK_ROUTE); err == nil {
				shim, err = hh.LinkByName(netsetup.LinkName(p.Name, netsetup.RoleShim))
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		err := ph.LinkDel(pl)
		if err == nil {
			err = hh.LinkDel(shim)
		}
		for _, f := range a.Files {
			f.Close()
		}
		bare = append(bare, time.Since(start))
		b.StopTimer()
		ph.Close()
		hh.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Undo(); err != nil { // finds the links gone
			b.Fatal(err)
		}
		b.StartTimer()
	}
	mu, mb := median(undo), median(bare)
	b.ReportMetric(ms(mu), "median-ms/undo")
	b.ReportMetric(ms(mb), "median-ms/bare")
	if mb > 0 {
		b.ReportMetric(float64(mu)/float64(mb), "undo/bare")
	}
}
