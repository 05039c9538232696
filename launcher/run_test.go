package launcher

import (
	"context"
	"errors"
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
	"github.com/vmrun/vmrun/internal/linetail"
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

// started is a Run going on in the background.
type started struct {
	res     <-chan Result
	pid     <-chan int
	running <-chan struct{}
}

// run runs cl in the background.
func run(t *testing.T, cl Cmdline, opts Options) started {
	t.Helper()
	pidc := make(chan int, 1)
	running := make(chan struct{})
	opts.Started = func(pid int) { pidc <- pid }
	opts.Running = func() { close(running) }
	resc := make(chan Result, 1)
	go func() { resc <- Run(context.Background(), cl, opts) }()
	return started{res: resc, pid: pidc, running: running}
}

// runBound bounds how long a test waits for QEMU to come up or to end: it
// is generous because a fresh, loaded machine can take tens of seconds to
// start QEMU (the page cache is cold, two cores are shared with other
// QEMUs under -race). Nothing is timed against it: a test fails only if an
// awaited event never comes.
const runBound = 3 * time.Minute

// awaitRunning waits until QEMU has acknowledged the resume after the QMP
// handshake (Options.Running): a stop or signal sent before that tests
// start-up, not a running guest.
func awaitRunning(t *testing.T, r started, n *notes) {
	t.Helper()
	select {
	case <-r.running:
	case res := <-r.res:
		t.Fatalf("Run returned (code %d, %v) before the guest ran; notes:\n%s", res.Code, res.Err, n)
	case <-time.After(runBound):
		t.Fatalf("the guest was not running (QMP handshake and resume, Options.Running) within %s; notes:\n%s", runBound, n)
	}
}

func wait(t *testing.T, r started, n *notes) Result {
	t.Helper()
	select {
	case res := <-r.res:
		return res
	case <-time.After(runBound):
		t.Fatalf("Run did not return within %s; notes:\n%s", runBound, n)
	}
	return Result{}
}

// alive reports whether pid still exists (not reaped).
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestStopGracePeriodThenQuit(t *testing.T) {
	cl, opts, n := bare(t)
	stop := make(chan os.Signal, 2)
	opts.Stop = stop
	vm := run(t, cl, opts)
	pid := <-vm.pid
	awaitRunning(t, vm, n)
	stop <- syscall.SIGTERM
	r := wait(t, vm, n)
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

// TestSecondStopForces: with an hour's grace, only the second stop request
// can end the run before wait's bound.
func TestSecondStopForces(t *testing.T) {
	cl, opts, n := bare(t)
	opts.Grace = time.Hour
	stop := make(chan os.Signal, 2)
	opts.Stop = stop
	// The second request is sent once the first has been acted on (its
	// notice printed), as a user presses Ctrl-C again after reading it.
	firstSeen := make(chan struct{})
	var once sync.Once
	opts.Notify = func(format string, args ...any) {
		n.add(format, args...)
		if strings.HasPrefix(fmt.Sprintf(format, args...), "stop requested") {
			once.Do(func() { close(firstSeen) })
		}
	}
	vm := run(t, cl, opts)
	awaitRunning(t, vm, n)
	stop <- syscall.SIGINT
	select {
	case <-firstSeen:
	case <-time.After(runBound):
		t.Fatalf("no notice for the first stop request within %s; notes:\n%s", runBound, n)
	}
	stop <- syscall.SIGINT
	r := wait(t, vm, n)
	if r.Code != exitcode.OK {
		t.Fatalf("code %d (%v), want 0; notes:\n%s", r.Code, r.Err, n)
	}
	if !strings.Contains(n.String(), "forcing") {
		t.Errorf("no force notice:\n%s", n)
	}
}

func TestTimeout(t *testing.T) {
	cl, opts, n := bare(t)
	opts.Timeout = 500 * time.Millisecond
	vm := run(t, cl, opts)
	r := wait(t, vm, n)
	if r.Code != exitcode.Timeout {
		t.Fatalf("code %d (%v), want 124; notes:\n%s", r.Code, r.Err, n)
	}
}

// TestLostStopsTheVM: a network attachment that can no longer serve the
// guest stops the VM the way --timeout does (power button, grace, quit),
// and the run ends with exit code 2 and the attachment's sentence.
func TestLostStopsTheVM(t *testing.T) {
	cl, opts, n := bare(t)
	lost := make(chan struct{})
	dead := errors.New("passt stopped (signal: killed): the guest has lost its network")
	opts.Lost, opts.LostErr = lost, func() error { return dead }
	vm := run(t, cl, opts)
	awaitRunning(t, vm, n)
	close(lost)
	r := wait(t, vm, n)
	if r.Code != exitcode.Setup || !errors.Is(r.Err, dead) {
		t.Fatalf("code %d (%v), want 2 with the attachment's sentence; notes:\n%s", r.Code, r.Err, n)
	}
	for _, want := range []string{"lost its network: powering the VM off", "did not power off within"} {
		if !strings.Contains(n.String(), want) {
			t.Errorf("notes lack %q:\n%s", want, n)
		}
	}
}

func TestQEMUKilledIsAbnormal(t *testing.T) {
	cl, opts, n := bare(t)
	vm := run(t, cl, opts)
	pid := <-vm.pid
	// Killed once the guest runs, so this is QEMU
	// dying (3), not QEMU failing to start (2).
	awaitRunning(t, vm, n)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := wait(t, vm, n)
	if r.Code != exitcode.QEMUDied || !strings.Contains(r.Err.Error(), "killed by signal") {
		t.Fatalf("code %d (%v), want 3; notes:\n%s", r.Code, r.Err, n)
	}
}

func TestQEMUBadArgumentIsSetupError(t *testing.T) {
	cl, opts, n := bare(t, "-device", "no-such-device")
	vm := run(t, cl, opts)
	r := wait(t, vm, n)
	if r.Code != exitcode.Setup || !strings.Contains(r.Err.Error(), "no-such-device") {
		t.Fatalf("code %d (%v), want 2 naming the device", r.Code, r.Err)
	}
	if strings.Contains(r.Err.Error(), "qemu-system-x86_64:") {
		t.Errorf("QEMU's program prefix not stripped: %v", r.Err)
	}
}

// brokenPipe fails every write as a pipe whose reader has gone does.
type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestLastWordsWithStderrGone: vmrun's stderr failing (`vmrun ... 2>&1 |
// head`) does not cost the error QEMU's last words.
func TestLastWordsWithStderrGone(t *testing.T) {
	cl, opts, n := bare(t, "-device", "no-such-device")
	opts.Stderr = brokenPipe{}
	r := wait(t, run(t, cl, opts), n)
	if r.Code != exitcode.Setup || r.Err == nil || !strings.Contains(r.Err.Error(), "no-such-device") {
		t.Fatalf("code %d (%v), want 2 naming the device", r.Code, r.Err)
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

func TestLastWords(t *testing.T) {
	tl := linetail.NewSkipBlank(2)
	tl.Write([]byte("one\ntwo\nqemu-system-x86_64: -device x: 'x' is not a valid device model name\n"))
	if got := lastWords(tl); got != "-device x: 'x' is not a valid device model name" {
		t.Fatalf("last = %q", got)
	}
	tl.Write([]byte("partial"))
	if got := lastWords(tl); got != "partial" {
		t.Fatalf("last = %q", got)
	}
}

// TestSIGQUITForcesAtOnce: with an hour's grace, only forcing can end the
// run before wait's bound.
func TestSIGQUITForcesAtOnce(t *testing.T) {
	cl, opts, n := bare(t)
	opts.Grace = time.Hour
	stop := make(chan os.Signal, 2)
	opts.Stop = stop
	vm := run(t, cl, opts)
	awaitRunning(t, vm, n)
	stop <- syscall.SIGQUIT
	r := wait(t, vm, n)
	if r.Code != exitcode.OK || !strings.Contains(n.String(), "SIGQUIT") {
		t.Fatalf("code %d (%v), want 0 and a SIGQUIT notice; notes:\n%s", r.Code, r.Err, n)
	}
}
