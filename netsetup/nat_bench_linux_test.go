package netsetup_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// natBenchPlan is a NAT plan for VM name with its shared state under root.
func natBenchPlan(name, root string) netsetup.Plan {
	return netsetup.Plan{Name: name, Mode: netsetup.NAT, Parent: netsetup.NATBridge, MAC: netsetup.DeriveMAC(name), Queues: 1,
		LinkName: netsetup.LinkName(name, netsetup.RoleTap), NAT: &netsetup.NATOptions{ResolvConf: "/dev/null"}, RuntimeRoot: root}
}

// BenchmarkNATSetup times Apply of a NAT plan with the crash-safe state
// (the VM's state file and the NAT network's shared state, both in a
// runtime root on this machine's disk): "first" is the first NAT VM, which
// creates the network (bridge, nftables table, sysctls) and whose Undo
// removes it again; "join" is a VM joining a network another VM keeps.
func BenchmarkNATSetup(b *testing.B) {
	for _, kind := range []string{"first", "join"} {
		b.Run(kind, func(b *testing.B) {
			l := newLab(b)
			l.host.MustRun(b, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
			root, err := os.MkdirTemp("", "vmrun-bench-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(root) })
			if kind == "join" {
				d, _, err := rundir.Create(root, "keeper")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := l.apply(b, context.Background(), natBenchPlan("keeper", root), d); err != nil {
					b.Fatal(err)
				}
			}
			var ds []time.Duration
			err = l.host.Do(func() error {
				for i := 0; i < b.N; i++ {
					name := fmt.Sprintf("bn-%d", i%64)
					d, _, err := rundir.Create(root, name)
					if err != nil {
						return err
					}
					start := time.Now()
					a, err := netsetup.Apply(context.Background(), natBenchPlan(name, root), d)
					ds = append(ds, time.Since(start))
					if err != nil {
						return err
					}
					b.StopTimer()
					err = a.Undo()
					_ = d.Remove()
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
