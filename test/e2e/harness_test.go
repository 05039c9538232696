// Package e2e runs the vmrun binary end to end: real QEMU (TCG) booting the
// test guest disk images, real links in throwaway network namespaces, a
// real DHCP server (dnsmasq) on the "LAN" side.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/kvmcheck"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// vmrunBin is the vmrun binary built once for the whole package.
var vmrunBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmrun-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Readable by all: some tests run vmrun as an unprivileged user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	vmrunBin = filepath.Join(dir, "vmrun")
	// What --net auto remembers per network goes to the package's own
	// directory, never the host's /var/lib/vmrun.
	if err := os.Setenv("VMRUN_STATE_DIR", filepath.Join(dir, "state")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	build := exec.Command("go", "build", "-trimpath", "-tags", "urfave_cli_no_docs", "-o", vmrunBin, "github.com/vmrun/vmrun/cmd/vmrun")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build` does
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building vmrun: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// VM is one vmrun process started by a test.
type VM struct {
	t       testing.TB
	cmd     *exec.Cmd
	Console *testutil.LineBuffer // stdout: the serial console
	Stderr  *testutil.LineBuffer
	done    chan struct{}
	code    int
	Runtime string // VMRUN_RUNTIME_DIR of this run
}

// runtimeDir returns a short private runtime root for a test (unix socket
// paths are limited to 108 bytes).
func runtimeDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "vr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// command returns an exec.Cmd running vmrun args inside ns (nil: this
// namespace) with a private runtime root.
func command(ns *testutil.Netns, runtime string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if ns != nil {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, vmrunBin}, args...)...)
	} else {
		cmd = exec.Command(vmrunBin, args...)
	}
	cmd.Env = vmrunEnv("VMRUN_RUNTIME_DIR=" + runtime)
	return cmd
}

// vmrunEnv is the tests' environment for vmrun plus extra, without
// SUDO_UID and SUDO_GID: under `sudo make test`, vmrun would run QEMU as
// the developer, who cannot open the tests' images in root's temporary
// directories. Tests that mean sudo set them in extra.
func vmrunEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SUDO_UID=") && !strings.HasPrefix(kv, "SUDO_GID=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Start starts vmrun with args in ns; it is killed at cleanup if still running.
func Start(t testing.TB, ns *testutil.Netns, runtime string, args ...string) *VM {
	t.Helper()
	if runtime == "" {
		runtime = runtimeDir(t)
	}
	return startCmd(t, command(ns, runtime, args...), runtime)
}

// startCmd starts cmd (a vmrun, directly or through a wrapper) as a VM
// whose runtime root is runtime; its process group is killed at cleanup
// if it still runs. A cmd whose Stdout is set keeps it (VM.Console then
// stays empty).
func startCmd(t testing.TB, cmd *exec.Cmd, runtime string) *VM {
	t.Helper()
	v := &VM{t: t, cmd: cmd, Console: testutil.NewLineBuffer(), Stderr: testutil.NewLineBuffer(), done: make(chan struct{}), Runtime: runtime}
	if cmd.Stdout == nil {
		cmd.Stdout = v.Console
	}
	cmd.Stderr = v.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		v.code = cmd.ProcessState.ExitCode()
		close(v.done)
	}()
	t.Cleanup(func() {
		select {
		case <-v.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-v.done
		}
		if t.Failed() {
			t.Logf("%v\n--- console:\n%s\n--- stderr:\n%s", cmd.Args, v.Console, v.Stderr)
		}
	})
	return v
}

// PID returns vmrun's pid (with `ip netns exec`, that process execs vmrun).
func (v *VM) PID() int { return v.cmd.Process.Pid }

// Signal sends sig to vmrun.
func (v *VM) Signal(sig syscall.Signal) {
	v.t.Helper()
	if err := v.cmd.Process.Signal(sig); err != nil {
		v.t.Fatalf("signal vmrun: %v", err)
	}
}

// Wait waits for vmrun to exit and returns its exit code.
func (v *VM) Wait(timeout time.Duration) int {
	v.t.Helper()
	select {
	case <-v.done:
		return v.code
	case <-time.After(timeout):
		v.t.Fatalf("vmrun did not exit within %s\n%s", timeout, v.lastLines())
	}
	return -1
}

// StopClean stops vmrun with SIGTERM and checks what such a stop leaves:
// exit code 0, and nothing behind (assertClean).
func (v *VM) StopClean(ns *testutil.Netns, before []string) {
	v.t.Helper()
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(exitTimeout); code != 0 {
		v.t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, v.Stderr)
	}
	assertClean(v.t, ns, before, v.Runtime)
}

// assertClean fails unless ns has the links it had before (a snapshotLinks)
// and the runtime root is empty (assertEmptyDir): what every run leaves.
func assertClean(t testing.TB, ns *testutil.Netns, before []string, runtime string) {
	t.Helper()
	if after := snapshotLinks(t, ns); !reflect.DeepEqual(after, before) {
		t.Fatalf("links after exit %v, before %v", after, before)
	}
	assertEmptyDir(t, runtime)
}

// lastLines shows the last lines vmrun and its guest printed, for a wait
// that expired (the whole output is logged at cleanup).
func (v *VM) lastLines() string {
	return fmt.Sprintf("--- last console lines:\n%s\n--- last lines on vmrun's stderr:\n%s", tailLines(v.Console.String(), 15), tailLines(v.Stderr.String(), 10))
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitConsole waits for a console line matching pattern; it gives up
// early when vmrun exits without printing it.
func (v *VM) WaitConsole(pattern string, timeout time.Duration) []string {
	v.t.Helper()
	type res struct {
		m   []string
		err error
	}
	c := make(chan res, 1)
	go func() { m, err := v.Console.WaitFor(pattern, timeout); c <- res{m, err} }()
	var r res
	select {
	case r = <-c:
		if r.err != nil {
			r.err = fmt.Errorf("no console line matching %q within %s (the guest is stuck, or slower than this bound)", pattern, timeout)
		}
	case <-v.done:
		// cmd.Wait has copied all of vmrun's output: look once more.
		m, err := v.Console.WaitFor(pattern, 0)
		r = res{m, err}
		if err != nil {
			r.err = fmt.Errorf("vmrun exited (code %d) before the console printed a line matching %q", v.code, pattern)
		}
	}
	m, err := r.m, r.err
	if err != nil {
		v.t.Fatalf("%v\n%s", err, v.lastLines())
	}
	return m
}

// GuestIP waits for the guest's address marker and returns the address.
func (v *VM) GuestIP(timeout time.Duration) string {
	v.t.Helper()
	m := v.WaitConsole(`VMRUN-GUEST-IP=(\S+)`, timeout)
	if m[1] == "none" {
		v.t.Fatalf("the guest got no address\n%s", v.lastLines())
	}
	ip, _, err := net.ParseCIDR(m[1])
	if err != nil {
		v.t.Fatalf("bad marker %q", m[1])
	}
	return ip.String()
}

// RunVMRun runs a short vmrun command (ls, stop, dry-run, bad input) and
// returns stdout, stderr and the exit code.
func RunVMRun(t testing.TB, ns *testutil.Netns, runtime string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	cmd := command(ns, runtime, args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	cmd.Env = vmrunEnv("VMRUN_RUNTIME_DIR=" + runtime)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("vmrun %v did not finish within %s\n--- stdout:\n%s\n--- stderr:\n%s", args, exitTimeout, out.String(), errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("vmrun %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// httpGet fetches http://addr/ from inside ns and returns the body.
func httpGet(t testing.TB, ns *testutil.Netns, addr string) string {
	t.Helper()
	var body string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: guest\r\n\r\n")
		b, err := io.ReadAll(c)
		body = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("GET http://%s/ from %s: %v", addr, ns.Name, err)
	}
	return body
}

// ping pings addr from ns (3 tries) and fails the test if nothing answers.
func ping(t testing.TB, ns *testutil.Netns, addr string) {
	t.Helper()
	ns.MustRun(t, "busybox", "ping", "-c", "3", "-W", "3", addr)
}

// snapshotLinks returns the sorted link names of ns.
func snapshotLinks(t testing.TB, ns *testutil.Netns) []string {
	t.Helper()
	l := ns.Links(t)
	sort.Strings(l)
	return l
}

// assertEmptyDir fails if dir has any entries (a runtime root after a
// run) but the kernel's answer about link types and whether KVM works,
// which vmrun keeps there per boot (netsetup.ProbeCacheFile,
// kvmcheck.CacheFile).
func assertEmptyDir(t testing.TB, dir string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		if e.Name() != netsetup.ProbeCacheFile && e.Name() != kvmcheck.CacheFile {
			names = append(names, e.Name())
		}
	}
	if len(names) != 0 {
		t.Fatalf("runtime root %s not empty after exit: %v", dir, names)
	}
}

// requireQEMUTests gates the end-to-end tests.
func requireQEMUTests(t testing.TB) testutil.GuestImages {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	return testutil.RequireGuest(t)
}
