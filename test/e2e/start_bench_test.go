package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCLIStart measures vmrun's own start as a process, the part of
// every command's time that is not its work: b.N runs each, alternating,
// of `vmrun --help`, `vmrun ls` (no VM), `vmrun exec novm -- true` (no
// such VM: start, look-up, exit 1), an empty Go program built as vmrun is
// (the Go runtime's floor) and /bin/true (exec's floor). For each: the
// median wall time, CPU time (user+system) and minor page faults (this
// machine is a nested VM, where page faults are dear). No QEMU needed.
func BenchmarkCLIStart(b *testing.B) {
	dir := b.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", empty, "main.go")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the empty program: %v\n%s", err, out)
	}
	runtime := runtimeDir(b)
	variants := []struct {
		name string
		argv []string
		code int
	}{
		{"help", []string{vmrunBin, "--help"}, 0},
		{"ls", []string{vmrunBin, "ls"}, 0},
		{"exec-novm", []string{vmrunBin, "exec", "novm", "--", "true"}, 1},
		{"empty-go", []string{empty}, 0},
		{"true", []string{"/bin/true"}, 0},
	}
	type sample struct{ wall, cpu, faults []float64 }
	got := map[string]*sample{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, v := range variants {
			cmd := exec.Command(v.argv[0], v.argv[1:]...)
			cmd.Env = append(os.Environ(), "VMRUN_RUNTIME_DIR="+runtime)
			t0 := time.Now()
			err := cmd.Run()
			wall := time.Since(t0)
			if code := cmd.ProcessState.ExitCode(); code != v.code {
				b.Fatalf("%s: exit %d (%v), want %d", v.name, code, err, v.code)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
			s := got[v.name]
			if s == nil {
				s = &sample{}
				got[v.name] = s
			}
			s.wall, s.cpu, s.faults = append(s.wall, ms(wall)), append(s.cpu, ms(cpu)), append(s.faults, float64(ru.Minflt))
		}
	}
	b.StopTimer()
	for _, v := range variants {
		s := got[v.name]
		b.ReportMetric(medianF(s.wall), "median-"+v.name+"-ms")
		b.ReportMetric(medianF(s.cpu), "median-"+v.name+"-cpu-ms")
		b.ReportMetric(medianF(s.faults), "median-"+v.name+"-faults")
	}
	b.ReportMetric(0, "ns/op")
}
