package netsetup_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// routedBenchPlan is a routed plan on up0 with a static address (the
// benchmarks time the set-up, not a DHCP exchange with a server).
func routedBenchPlan(name string, i int) netsetup.Plan {
	return netsetup.Plan{Name: name, Mode: netsetup.Routed, Parent: "up0", MAC: netsetup.DeriveMAC(name), Queues: 1,
		LinkName: netsetup.LinkName(name, netsetup.RoleTap), MTU: 1500,
		GuestAddr: netsetup.GuestAddrStatic, GuestIP: net.IPv4(10, 77, 1, byte(1+i%200)).To4()}
}

// routedRecorders are the recorders the benchmarks run with: none (like
// the other modes' benchmarks), and a real runtime directory (each object
// is appended to the state's journal before it is made).
func routedRecorders(b *testing.B) map[string]func(name string) (netsetup.Recorder, func()) {
	root, err := os.MkdirTemp("", "vmrun-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	return map[string]func(string) (netsetup.Recorder, func()){
		"norecord": func(string) (netsetup.Recorder, func()) { return nil, func() {} },
		"statefile": func(name string) (netsetup.Recorder, func()) {
			d, _, err := rundir.Create(root, name)
			if err != nil {
				b.Fatal(err)
			}
			return d, func() { _ = d.Remove() }
		},
	}
}

// BenchmarkRoutedSetup times Apply of a routed plan per VM: tap, its
// addresses, sysctls, route, proxy entry, the responder's socket and the
// queue fd (no DHCP wait: the address is static).
func BenchmarkRoutedSetup(b *testing.B) {
	l := routedLab(b)
	for _, kind := range []string{"norecord", "statefile"} {
		b.Run(kind, func(b *testing.B) {
			recs := routedRecorders(b)
			var ds []time.Duration
			err := l.host.Do(func() error {
				for i := 0; i < b.N; i++ {
					name := fmt.Sprintf("brs-%d", i%64)
					rec, done := recs[kind](name)
					start := time.Now()
					a, err := netsetup.Apply(context.Background(), routedBenchPlan(name, i), rec)
					ds = append(ds, time.Since(start))
					if err != nil {
						return err
					}
					b.StopTimer()
					err = a.Undo()
					done()
					b.StartTimer()
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(ms(median(ds)), "median-ms/setup")
		})
	}
}

// BenchmarkRoutedTeardown compares Undo of a routed attachment with the
// kernel's bare deletion of its tap (queue fd closed, RTM_DELLINK, which
// also takes the tap's addresses and route), alternating the two in one
// run. The bare deletion leaves the proxy entry, the sysctls and the
// responder behind: Undo removes them afterwards, untimed.
func BenchmarkRoutedTeardown(b *testing.B) {
	l := routedLab(b)
	for _, kind := range []string{"norecord", "statefile"} {
		b.Run(kind, func(b *testing.B) {
			recs := routedRecorders(b)
			alternateTeardowns(b, l, func(i int) (*netsetup.Attachment, func(), error) {
				name := fmt.Sprintf("brt-%d", i%64)
				rec, done := recs[kind](name)
				a, err := netsetup.Apply(context.Background(), routedBenchPlan(name, i), rec)
				return a, done, err
			})
		})
	}
}
