package launcher

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// firstChildEnv has the test binary, run again by BenchmarkWarmUp, time
// its own first child's start ("cold", or "warm": after warmUp) instead of
// running tests.
const firstChildEnv = "VMRUN_TEST_FIRST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(firstChildEnv); mode != "" {
		os.Exit(firstChild(mode == "warm"))
	}
	os.Exit(m.Run())
}

// firstChild starts /bin/true as this process's first child and prints
// how long exec.Cmd.Start took, in microseconds.
func firstChild(warm bool) int {
	if warm {
		warmUp() // done, as a run's set-up gives WarmUp time to be
	}
	cmd := exec.Command("/bin/true")
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	d := time.Since(t0)
	if err := cmd.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(d.Microseconds())
	return 0
}

// BenchmarkWarmUp times a process's first child's start (exec.Cmd.Start,
// as Start starts QEMU) without and with WarmUp's check done beforehand,
// in fresh processes, alternating: the medians of b.N each.
func BenchmarkWarmUp(b *testing.B) {
	got := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for _, mode := range []string{"cold", "warm"} {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), firstChildEnv+"="+mode)
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("%s first child: %v", mode, err)
			}
			us, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
			if err != nil {
				b.Fatalf("%s first child printed %q", mode, out)
			}
			got[mode] = append(got[mode], us/1000)
		}
	}
	for mode, ms := range got {
		slices.Sort(ms)
		b.ReportMetric(ms[len(ms)/2], "median-"+mode+"-ms")
	}
	b.ReportMetric(0, "ns/op")
}
