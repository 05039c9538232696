package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/qmp"
)

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// medianF is the median of xs (the upper middle one for an even count).
func medianF(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// vmrunToQMPReady execs vmrun and returns the wall time until it reports
// (with -v) that QMP is ready; then it stops the VM.
func vmrunToQMPReady(b *testing.B, disk string) time.Duration {
	runtime := runtimeDir(b)
	cmd := command(nil, runtime, "-v", "--disk", disk, "--snapshot", "--net", "none", "--console", "none", "--name", "bench")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var d time.Duration
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "QMP ready") {
			d = time.Since(start)
			break
		}
	}
	// Forced stop: no grace period.
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	go func() { _, _ = bufio.NewReader(stderr).WriteTo(devNull{}) }()
	if err := cmd.Wait(); err != nil || d == 0 {
		b.Fatalf("vmrun: %v (ready after %s)", err, d)
	}
	return d
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

// bareQEMUToQMPReady starts QEMU by hand with vmrun's own argv (from
// --dry-run) and the same listener-fd monitor, and returns the wall time
// until the QMP handshake is done.
func bareQEMUToQMPReady(b *testing.B, argv []string) time.Duration {
	sock := filepath.Join(runtimeDir(b), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.File()
	if err != nil {
		b.Fatal(err)
	}
	// vmrun's -pidfile names its runtime dir, which a bare run has not;
	// the files vmrun opens for QEMU (-add-fd fd=N,set=S,opaque=PATH, used
	// as /dev/fdset/S) a bare run names by path.
	var args []string
	fdset := map[string]string{}
	for i := 1; i < len(argv); i++ {
		switch {
		case argv[i] == "-pidfile":
			i++
			continue
		case argv[i] == "-add-fd" && i+1 < len(argv):
			i++
			if m := regexp.MustCompile(`(?:^|,)set=(\d+),opaque=(.*)$`).FindStringSubmatch(argv[i]); m != nil {
				fdset["/dev/fdset/"+m[1]] = m[2]
			}
			continue
		}
		args = append(args, argv[i])
	}
	for i, a := range args {
		for set, path := range fdset {
			args[i] = strings.ReplaceAll(a, set+",", path+",")
			a = args[i]
		}
	}
	cmd := exec.Command(argv[0], args...)
	cmd.ExtraFiles = []*os.File{f}
	// The other listener fds vmrun passes (the guest agent's ports: fd=4,
	// fd=5, ...) get listeners too, or QEMU exits at once.
	for _, m := range regexp.MustCompile(`\bfd=(\d+)\b`).FindAllStringSubmatch(strings.Join(args, " "), -1) {
		n, _ := strconv.Atoi(m[1])
		for len(cmd.ExtraFiles) < n-2 {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(filepath.Dir(sock), fmt.Sprintf("fd%d.sock", len(cmd.ExtraFiles)+3)), Net: "unix"})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			lf, err := l.File()
			if err != nil {
				b.Fatal(err)
			}
			defer lf.Close()
			cmd.ExtraFiles = append(cmd.ExtraFiles, lf)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	// Generous: QEMU itself takes 0.1 s on a quiet machine, but 30 s ran out
	// on this 2-CPU machine at load 20.
	c, err := qmp.Connect(context.Background(), sock, 3*time.Minute)
	d := time.Since(start)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.Fatal(err)
	}
	_ = c.Quit(context.Background())
	c.Close()
	_ = cmd.Wait()
	return d
}

// BenchmarkQMPReady compares the wall time from exec to a ready QMP
// session: vmrun (everything it does before QEMU, plus QEMU) against bare
// QEMU started the same way by hand. Runs alternate to share machine noise.
// Target: median overhead ≤ 30 ms.
func BenchmarkQMPReady(b *testing.B) {
	testutil.RequireQEMU(b)
	g := testutil.RequireGuest(b)
	// --qemu-privileged: bare QEMU opens the disk by path, as a user runs
	// it by hand (a confined vmrun argv names fdsets this run would lack).
	out, _, code := RunVMRun(b, nil, runtimeDir(b), "--disk", g.Test, "--snapshot", "--net", "none", "--console", "none", "--name", "bench", "--qemu-privileged", "--dry-run", "--json")
	var dr struct{ Argv []string }
	if err := json.Unmarshal([]byte(out), &dr); err != nil || code != 0 {
		b.Fatalf("dry-run: %v %s", err, out)
	}
	// The dry-run argv passes the monitor as fd 3, as the bare run does.
	var vm, bare []time.Duration
	for i := 0; i < b.N; i++ {
		vm = append(vm, vmrunToQMPReady(b, g.Test))
		bare = append(bare, bareQEMUToQMPReady(b, dr.Argv))
	}
	b.ReportMetric(ms(median(vm)), "vmrun-ms")
	b.ReportMetric(ms(median(bare)), "qemu-ms")
	b.ReportMetric(ms(median(vm)-median(bare)), "overhead-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSupervisorRSS boots the test guest b.N times and reads vmrun's
// own resident memory once per boot while it supervises the running VM; it
// reports the median and the largest of those readings. Target ≤ 20 MB.
func BenchmarkSupervisorRSS(b *testing.B) {
	testutil.RequireQEMU(b)
	g := testutil.RequireGuest(b)
	var rss []float64
	for i := 0; i < b.N; i++ {
		vm := Start(b, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--console", "serial", "--name", "bench-rss")
		// Read once the guest is ready: vmrun's set-up is over and it only
		// supervises (no wait for a "steady state" that nothing signals).
		vm.WaitConsole(`VMRUN-GUEST: ready`, bootTimeout)
		st, err := os.ReadFile("/proc/" + strconv.Itoa(vm.PID()) + "/status")
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
				kb, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					b.Fatalf("VmRSS: %v", err)
				}
				rss = append(rss, kb/1024)
			}
		}
		vm.Signal(syscall.SIGTERM)
		if code := vm.Wait(exitTimeout); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
	if len(rss) != b.N {
		b.Fatalf("%d VmRSS readings for %d boots", len(rss), b.N)
	}
	b.ReportMetric(medianF(rss), "median-rss-MB")
	b.ReportMetric(slices.Max(rss), "max-rss-MB")
	b.ReportMetric(0, "ns/op")
}
