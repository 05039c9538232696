package netsetup_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup"
	"golang.org/x/sys/unix"
)

// benchPlans returns a tap-on-bridge and a macvtap plan factory for a lab
// whose uplink up0 is a port of br0 (the macvtap sits on br0).
func benchLab(b *testing.B) (*lab, map[string]func(name string) netsetup.Plan) {
	l := newLab(b)
	l.bridged(b)
	mk := func(mode netsetup.Mode) func(string) netsetup.Plan {
		return func(name string) netsetup.Plan {
			return netsetup.Plan{Name: name, Mode: mode, Parent: "br0", MAC: netsetup.DeriveMAC(name), Queues: 1,
				LinkName: netsetup.LinkName(name, map[netsetup.Mode]netsetup.LinkRole{netsetup.Bridge: netsetup.RoleTap, netsetup.Macvtap: netsetup.RoleMacvtap}[mode])}
		}
	}
	return l, map[string]func(string) netsetup.Plan{"tap-bridge": mk(netsetup.Bridge), "macvtap": mk(netsetup.Macvtap)}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// medianF is the median of xs (the upper middle one for an even count).
func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSetup times Apply per VM: create, attach, up, open the queue
// fd; without a recorder ("tap-bridge", "macvtap") and, as a run does it,
// with the VM's runtime directory recording each object before it is made
// ("tap-bridge/statefile", "macvtap/statefile").
func BenchmarkSetup(b *testing.B) {
	l, plans := benchLab(b)
	for _, kind := range []string{"tap-bridge", "macvtap", "tap-bridge/statefile", "macvtap/statefile"} {
		mode, rec, _ := strings.Cut(kind, "/")
		if rec == "" {
			rec = "norecord"
		}
		b.Run(kind, func(b *testing.B) {
			recs := routedRecorders(b)
			var ds []time.Duration
			err := l.host.Do(func() error {
				for i := 0; i < b.N; i++ {
					name := fmt.Sprintf("bs-%d", i%64)
					r, done := recs[rec](name)
					start := time.Now()
					a, err := netsetup.Apply(context.Background(), plans[mode](name), r)
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

// BenchmarkTeardown compares Undo with the kernel's bare deletion of the
// same kind of link (queue fds closed, RTM_DELLINK), alternating the two
// in one run.
func BenchmarkTeardown(b *testing.B) {
	l, plans := benchLab(b)
	for _, kind := range []string{"tap-bridge", "macvtap"} {
		b.Run(kind, func(b *testing.B) {
			alternateTeardowns(b, l, func(i int) (*netsetup.Attachment, func(), error) {
				a, err := netsetup.Apply(context.Background(), plans[kind](fmt.Sprintf("bt-%d", i%64)), nil)
				return a, func() {}, err
			})
		})
	}
}

// alternateTeardowns sets up b.N attachments with apply, in l's host
// namespace, and tears them down alternately with Undo and with the
// kernel's bare deletion of the link (bareDelete; Undo then removes what
// is left, untimed), calling each attachment's done func untimed after
// it. It reports both medians and their ratio.
func alternateTeardowns(b *testing.B, l *lab, apply func(i int) (a *netsetup.Attachment, done func(), err error)) {
	var undo, bare []time.Duration
	err := l.host.Do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		for i := 0; i < b.N; i++ {
			a, done, err := apply(i)
			if err != nil {
				return err
			}
			start := time.Now()
			if i%2 == 0 {
				err = a.Undo()
				undo = append(undo, time.Since(start))
				b.StopTimer()
			} else {
				err = bareDelete(h, a)
				bare = append(bare, time.Since(start))
				b.StopTimer()
				if err == nil {
					err = a.Undo()
				}
			}
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
	mu, mb := median(undo), median(bare)
	b.ReportMetric(ms(mu), "median-ms/undo")
	b.ReportMetric(ms(mb), "median-ms/bare")
	if mb > 0 {
		b.ReportMetric(float64(mu)/float64(mb), "undo/bare")
	}
}

// bareDelete is the kernel's own teardown: RTM_DELLINK and close the fds.
func bareDelete(h *netlink.Handle, a *netsetup.Attachment) error {
	l, err := h.LinkByName(a.LinkName)
	if err != nil {
		return err
	}
	if err := h.LinkDel(l); err != nil {
		return err
	}
	for _, f := range a.Files {
		f.Close()
	}
	return nil
}

// BenchmarkParallel sets up and tears down 32 VMs with 1, 8 and 32 of
// them in flight at once, b.N times, and reports the median over the b.N
// batches of the batch's wall time divided by 32 (the wall time per VM).
func BenchmarkParallel(b *testing.B) {
	const vms = 32
	l, plans := benchLab(b)
	for _, kind := range []string{"tap-bridge", "macvtap"} {
		for _, par := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/%d", kind, par), func(b *testing.B) {
				var batches []time.Duration
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if err := setupTeardownAll(l, plans[kind], vms, par); err != nil {
						b.Fatal(err)
					}
					batches = append(batches, time.Since(start))
				}
				b.ReportMetric(ms(median(batches))/vms, "median-ms/VM")
			})
		}
	}
}

// setupTeardownAll applies and undoes vms plans with par workers.
func setupTeardownAll(l *lab, plan func(string) netsetup.Plan, vms, par int) error {
	jobs := make(chan int)
	errs := make(chan error, par)
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			errs <- l.host.Do(func() error {
				var first error
				for j := range jobs { // keep draining after an error
					if first != nil {
						continue
					}
					a, err := netsetup.Apply(context.Background(), plan(fmt.Sprintf("bp-%d", j)), nil)
					if err == nil {
						err = a.Undo()
					}
					first = err
				}
				return first
			})
		})
	}
	for j := range vms {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
