package launcher

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/testutil"
)

// bare returns a Cmdline for a real QEMU with no boot device (SeaBIOS
// spins, the guest never answers the power button) and its options.
func bare(t *testing.T, extra ...string) (Cmdline, Options, *notes) {
	t.Helper()
	qemu := testutil.RequireQEMU(t)
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	vm := VM{Name: "t", QEMU: qemu, MemMiB: 64, CPUs: 1, Kernel: "/nonexistent", Console: ConsoleNone, QMP: f, ExtraArgs: extra}
	cl, err := Build(vm)
	if err != nil {
		t.Fatal(err)
	}
	// No kernel: drop -kernel so QEMU starts with nothing to boot.
	var args []string
	for i := 0; i < len(cl.Args); i++ {
		if cl.Args[i] == "-kernel" {
			i++
			continue
		}
		args = append(args, cl.Args[i])
	}
	cl.Args = args
	n := &notes{}
	return cl, Options{QMPPath: sock, Grace: 300 * time.Millisecond, Notify: n.add, Stderr: n}, n
}

// notes collects notices and QEMU's stderr.
type notes struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (n *notes) add(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.buf.WriteString(strings.TrimSpace(fmt.Sprintf(format, args...)) + "\n")
}

func (n *notes) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.buf.Write(p)
}

func (n *notes) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.buf.String()
}

// run runs cl in the background and returns the result channel and QEMU's pid.
func run(t *testing.T, cl Cmdline, opts Options) (<-chan Result, <-chan int) {
	t.Helper()
	pidc := make(chan int, 1)
	ready := make(chan struct{})
	opts.Started = func(pid int) { pidc <- pid }
	opts.Ready = func(string) { close(ready) }
	resc := make(chan Result, 1)
	go func() { resc <- Run(context.Background(), cl, opts) }()
	return resc, pidc
}

func wait(t *testing.T, resc <-chan Result) Result {
	t.Helper()
	select {
	case r := <-resc:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s")
	}
	return Result{}
}

// alive reports whether pid still exists (not reaped).
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestStopGracePeriodThenQuit(t *testing.T) {
	cl, opts, n := bare(t)
	stop := make(chan os.Signal, 2)
	opts.Stop = stop
	resc, pidc := run(t, cl, opts)
	pid := <-pidc
	time.Sleep(200 * time.Millisecond)
	stop <- syscall.SIGTERM
	r := wait(t, resc)
	if r.Code != exitcode.OK {
		t.Fatalf("code %d (%v), want 0; notes:\n%s", r.Code, r.Err, n)
	}
	if !strings.Contains(n.String(), "did not power off within") {
		t.Errorf("no grace-period notice:\n%s", n)
	}
	if alive(pid) {
		t.Errorf("QEMU pid %d still alive", pid)
	}
}

func TestSecondStopForces(t *testing.T) {
	cl, opts, n := bare(t)
	opts.Grace = time.Hour
	stop := make(chan os.Signal, 2)
	opts.Stop = stop
	resc, _ := run(t, cl, opts)
	time.Sleep(300 * time.Millisecond)
	stop <- syscall.SIGINT
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	stop <- syscall.SIGINT
	r := wait(t, resc)
	if r.Code != exitcode.OK || time.Since(start) > 10*time.Second {
		t.Fatalf("code %d after %s, notes:\n%s", r.Code, time.Since(start), n)
	}
	if !strings.Contains(n.String(), "forcing") {
		t.Errorf("no force notice:\n%s", n)
	}
}

func TestTimeout(t *testing.T) {
	cl, opts, n := bare(t)
	opts.Timeout = 500 * time.Millisecond
	resc, _ := run(t, cl, opts)
	r := wait(t, resc)
	if r.Code != exitcode.Timeout {
		t.Fatalf("code %d (%v), want 124; notes:\n%s", r.Code, r.Err, n)
	}
}

func TestQEMUKilledIsAbnormal(t *testing.T) {
	cl, opts, n := bare(t)
	resc, pidc := run(t, cl, opts)
	pid := <-pidc
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := wait(t, resc)
	if r.Code != exitcode.QEMUDied || !strings.Contains(r.Err.Error(), "killed by signal") {
		t.Fatalf("code %d (%v), want 3; notes:\n%s", r.Code, r.Err, n)
	}
}

func TestQEMUBadArgumentIsSetupError(t *testing.T) {
	cl, opts, _ := bare(t, "-device", "no-such-device")
	resc, _ := run(t, cl, opts)
	r := wait(t, resc)
	if r.Code != exitcode.Setup || !strings.Contains(r.Err.Error(), "no-such-device") {
		t.Fatalf("code %d (%v), want 2 naming the device", r.Code, r.Err)
	}
	if strings.Contains(r.Err.Error(), "qemu-system-x86_64:") {
		t.Errorf("QEMU's program prefix not stripped: %v", r.Err)
	}
}

func TestMissingQEMU(t *testing.T) {
	cl, opts, _ := bare(t)
	cl.Path = "/nonexistent/qemu-system-x86_64"
	r := Run(context.Background(), cl, opts)
	if r.Code != exitcode.Setup || !strings.Contains(r.Err.Error(), "apt-get install qemu-system-x86") {
		t.Fatalf("code %d (%v)", r.Code, r.Err)
	}
}

func TestStopBeforeReady(t *testing.T) {
	cl, opts, _ := bare(t)
	stop := make(chan os.Signal, 2)
	stop <- syscall.SIGTERM
	opts.Stop = stop
	r := Run(context.Background(), cl, opts)
	if r.Code != exitcode.OK {
		t.Fatalf("code %d (%v)", r.Code, r.Err)
	}
}

func TestTail(t *testing.T) {
	tl := newTail(2)
	tl.Write([]byte("one\ntwo\nqemu-system-x86_64: -device x: 'x' is not a valid device model name\n"))
	if got := tl.last(); got != "-device x: 'x' is not a valid device model name" {
		t.Fatalf("last = %q", got)
	}
	tl.Write([]byte("partial"))
	if got := tl.last(); got != "partial" {
		t.Fatalf("last = %q", got)
	}
}

func TestSIGQUITForcesAtOnce(t *testing.T) {
	cl, opts, n := bare(t)
	opts.Grace = time.Hour
	stop := make(chan os.Signal, 2)
	opts.Stop = stop
	resc, _ := run(t, cl, opts)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	stop <- syscall.SIGQUIT
	r := wait(t, resc)
	if r.Code != exitcode.OK || time.Since(start) > 10*time.Second || !strings.Contains(n.String(), "SIGQUIT") {
		t.Fatalf("code %d after %s, notes:\n%s", r.Code, time.Since(start), n)
	}
}
