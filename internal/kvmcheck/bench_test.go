package kvmcheck

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/launcher"
)

// BenchmarkKVMCheck times what --accel auto pays to know whether KVM
// works, alternating: the first start after a boot (the probe: QEMU
// started with the probe's arguments and told to quit) and every later
// one (the answer read back from the runtime root). The medians of b.N
// each. On a host without /dev/kvm vmrun never asks; the cached figure is
// still the file's read.
func BenchmarkKVMCheck(b *testing.B) {
	qemu := testutil.RequireQEMU(b)
	k, _ := currentKey(qemu)
	path := filepath.Join(b.TempDir(), CacheFile)
	probe := func() (string, bool) { return launcher.ProbeKVM(qemu, Timeout) }
	got := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for _, mode := range []string{"probe", "cached"} {
			start := time.Now()
			works(path, k, true, probe)
			got[mode] = append(got[mode], float64(time.Since(start).Microseconds())/1000)
			if mode == "cached" {
				if _, ok := read(path, k); !ok {
					b.Fatal("the probe's answer was not kept")
				}
				if err := os.Remove(path); err != nil { // the next round probes again
					b.Fatal(err)
				}
			}
		}
	}
	for mode, ms := range got {
		slices.Sort(ms)
		b.ReportMetric(ms[len(ms)/2], "median-"+mode+"-ms")
	}
	b.ReportMetric(0, "ns/op")
}
