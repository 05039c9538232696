package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/testutil"
)

// Bounds on waits for a guest or for vmrun. None is a speed target: each
// only says when to stop waiting for an event that is not coming, and a
// wait that expires names what it awaited and shows the last console
// lines. They are generous because the guests boot under TCG on two cores
// shared with other QEMUs (the nested rig among them), under -race, on a
// machine whose page cache may be cold: a boot that takes about 10 s on an
// idle machine was seen taking over a minute there.
const (
	// bootTimeout: from vmrun's start to a marker the guest prints once
	// booted (its address, "ready", or its exit).
	bootTimeout = 5 * time.Minute
	// stepTimeout: from one console marker to a later one of the same boot.
	stepTimeout = 2 * time.Minute
	// exitTimeout: from a stop (a signal, `vmrun stop`, --timeout, a kill)
	// to vmrun's exit.
	exitTimeout = 2 * time.Minute
)

// lan is a "host" namespace whose uplink is a veth to a "lan" namespace
// running dnsmasq (10.77.0.0/24, the lan side is 10.77.0.1).
type lan struct {
	Host, LAN *testutil.Netns
	Uplink    string            // the host side of the veth
	DHCP      *testutil.Process // the LAN's dnsmasq
}

// newLAN builds host ↔ lan; with bridge, the host's uplink veth is
// enslaved to a bridge "br0" that carries the host address.
func newLAN(t testing.TB, bridge bool) *lan {
	t.Helper()
	l := &lan{Host: testutil.NewNetns(t, "h"), LAN: testutil.NewNetns(t, "l"), Uplink: "up0"}
	testutil.Veth(t, l.Host, "up0", l.LAN, "lan0")
	l.LAN.MustRun(t, "ip", "addr", "add", "10.77.0.1/24", "dev", "lan0")
	hostIf := "up0"
	if bridge {
		l.Host.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
		l.Host.MustRun(t, "ip", "link", "set", "up0", "master", "br0")
		l.Host.MustRun(t, "ip", "link", "set", "br0", "up")
		hostIf = "br0"
	}
	l.Host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", hostIf)
	l.Host.MustRun(t, "ip", "route", "add", "default", "via", "10.77.0.1")
	l.DHCP = testutil.StartDnsmasq(t, l.LAN, "lan0", "10.77.0.100", "10.77.0.150")
	return l
}

func TestBridgeEndToEnd(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, true)
	before := snapshotLinks(t, l.Host)
	vm := Start(t, l.Host, "", "--disk", g.Test, "--snapshot", "--net", "bridge:br0", "--console", "serial", "--name", "e2e-bridge")
	ip := vm.GuestIP(bootTimeout)
	if !strings.HasPrefix(ip, "10.77.0.") {
		t.Fatalf("guest address %s is not from the LAN's DHCP server", ip)
	}
	vm.WaitConsole(`VMRUN-GUEST: ready`, stepTimeout)
	ping(t, l.LAN, ip)
	if body := httpGet(t, l.LAN, ip+":80"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Fatalf("guest TCP port answered %q", body)
	}
	during := snapshotLinks(t, l.Host)
	if len(during) != len(before)+1 {
		t.Errorf("links while running %v, before %v: want exactly one tap more", during, before)
	}
	vm.StopClean(l.Host, before)
}

func TestUserModePortForward(t *testing.T) {
	g := requireQEMUTests(t)
	ns := testutil.NewNetns(t, "u") // its own loopback: the forwarded port collides with nothing
	vm := Start(t, ns, "", "--disk", g.Test, "--snapshot", "--net", "user", "--forward", "tcp:127.0.0.1:18080:80", "--name", "e2e-user")
	ip := vm.GuestIP(bootTimeout)
	if ip != "10.0.2.15" {
		t.Errorf("user-mode guest address %s, want QEMU's 10.0.2.15", ip)
	}
	vm.WaitConsole(`VMRUN-GUEST: ready`, stepTimeout)
	if body := httpGet(t, ns, "127.0.0.1:18080"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Fatalf("forwarded port answered %q", body)
	}
	vm.Signal(syscall.SIGINT)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	assertEmptyDir(t, vm.Runtime)
}

func TestTimeoutStopsAndCleansUp(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, true)
	before := snapshotLinks(t, l.Host)
	vm := Start(t, l.Host, "", "--disk", g.Test, "--snapshot", "--net", "bridge:br0", "--timeout", "4s", "--shutdown-grace", "3s", "--name", "e2e-timeout")
	if code := vm.Wait(exitTimeout); code != 124 {
		t.Fatalf("exit code %d, want 124\n%s", code, vm.Stderr)
	}
	if !strings.Contains(vm.Stderr.String(), "--timeout 4s expired") {
		t.Errorf("stderr does not say why:\n%s", vm.Stderr)
	}
	assertClean(t, l.Host, before, vm.Runtime)
}

// TestBrokenConsolePipe: `vmrun ... | head` — the reader of vmrun's
// standard output goes away while the guest boots. vmrun is not killed by
// the SIGPIPE (it would leave its links and runtime directory behind): the
// VM keeps running, the console still reaches --serial-log, one notice
// says what happened, and a stop cleans up as always.
func TestBrokenConsolePipe(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	before := snapshotLinks(t, l.Host)
	runtime := runtimeDir(t)
	log := filepath.Join(t.TempDir(), "serial.log")
	const name = "e2e-pipe"
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := command(l.Host, runtime, "--disk", g.Test, "--snapshot", "--net", "auto", "--console", "serial", "--serial-log", log, "--name", name)
	cmd.Stdout = w
	vm := startCmd(t, cmd, runtime)
	w.Close()
	// The first console bytes (the firmware's), then the reader goes.
	read := make(chan error, 1)
	go func() { _, err := r.Read(make([]byte, 64)); read <- err }()
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("reading the console: %v", err)
		}
	case <-time.After(bootTimeout):
		t.Fatalf("no console output within %s\n%s", bootTimeout, vm.Stderr)
	}
	r.Close()
	// vmrun, still running, learns the guest's address: the boot went on.
	out, errOut, code := RunVMRun(t, l.Host, runtime, "wait", name, "--timeout", bootTimeout.String())
	if code != 0 || !strings.HasPrefix(out, "10.77.0.") {
		t.Fatalf("vmrun wait %s: exit %d, %q %s\n--- vmrun's stderr:\n%s", name, code, out, errOut, vm.Stderr)
	}
	if _, err := vm.Stderr.WaitFor(`serial console could not be written to standard output \(.*broken pipe\)`, stepTimeout); err != nil {
		t.Errorf("no notice of the broken pipe on stderr:\n%s", vm.Stderr)
	}
	vm.StopClean(l.Host, before)
	// Written after the pipe broke: the boot's marker and the power-off's.
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"VMRUN-GUEST: booted role=test", "VMRUN-GUEST: power button pressed"} {
		if !strings.Contains(string(b), m) {
			t.Errorf("--serial-log lacks %q, written after the pipe broke:\n%s", m, tailLines(string(b), 15))
		}
	}
}

func TestGuestPanicExit4(t *testing.T) {
	g := requireQEMUTests(t)
	ns := testutil.NewNetns(t, "p")
	vm := Start(t, ns, "", "--disk", g.Panic, "--snapshot", "--net", "none", "--name", "e2e-panic")
	if code := vm.Wait(bootTimeout); code != 4 {
		t.Fatalf("exit code %d, want 4\n%s", code, vm.Stderr)
	}
	if !strings.Contains(vm.Stderr.String(), "panicked") {
		t.Errorf("stderr does not mention the panic:\n%s", vm.Stderr)
	}
	assertEmptyDir(t, vm.Runtime)
}

func TestGuestPowersOffByItself(t *testing.T) {
	g := requireQEMUTests(t)
	ns := testutil.NewNetns(t, "d")
	vm := Start(t, ns, "", "--disk", g.Demo, "--snapshot", "--net", "user", "--name", "e2e-demo")
	if code := vm.Wait(bootTimeout); code != 0 {
		t.Fatalf("exit code %d, want 0\n%s", code, vm.Stderr)
	}
	vm.WaitConsole(`reachability: gateway 10.0.2.2 answered`, time.Second)
	assertEmptyDir(t, vm.Runtime)
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// copyFile copies the guest image so that a test may let the guest write.
func copyFile(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestSnapshotLeavesImageUnchanged boots a guest that writes to its disk:
// with --snapshot the image's bytes must not change; without, they do (so
// the check can fail). With --snapshot, QEMU is then killed outright and
// its overlay must leave nothing in TMPDIR.
func TestSnapshotLeavesImageUnchanged(t *testing.T) {
	g := requireQEMUTests(t)
	ns := testutil.NewNetns(t, "s")
	tmp, err := os.MkdirTemp("", "vmrun-tmpdir-") // not in t.TempDir's 0700 directory: QEMU's user could not reach it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o1777); err != nil { // as /var/tmp is
		t.Fatal(err)
	}
	for _, snapshot := range []bool{true, false} {
		img := copyFile(t, g.Test)
		before := fileHash(t, img)
		args := []string{"--disk", img, "--net", "none", "--name", "e2e-snap"}
		if snapshot {
			args = append(args, "--snapshot")
		}
		runtime := runtimeDir(t)
		cmd := command(ns, runtime, args...)
		cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
		vm := startCmd(t, cmd, runtime)
		vm.WaitConsole(`VMRUN-GUEST: disk written`, bootTimeout)
		sig, want := syscall.SIGTERM, 0
		pid := vm.PID()
		if snapshot {
			sig, want = syscall.SIGKILL, exitcode.QEMUDied
			pid, _ = qemuPID(t, vm, "e2e-snap")
		}
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		if code := vm.Wait(exitTimeout); code != want {
			t.Fatalf("snapshot=%v: exit code %d, want %d\n%s", snapshot, code, want, vm.Stderr)
		}
		changed := fileHash(t, img) != before
		if snapshot && changed {
			t.Fatal("--snapshot: the base image changed")
		}
		if !snapshot && !changed {
			t.Fatal("without --snapshot the guest's write did not reach the image: the check proves nothing")
		}
		assertEmptyDir(t, tmp)
	}
}

func TestDryRunCreatesNothing(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, true)
	runtime := runtimeDir(t)
	before := snapshotLinks(t, l.Host)
	out, errOut, code := RunVMRun(t, l.Host, runtime, "--disk", g.Test, "--net", "bridge:br0", "--cpus", "2", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("dry-run exit %d: %s", code, errOut)
	}
	var dr struct {
		Plan struct {
			Mode   string `json:"mode"`
			Parent string `json:"parent"`
			MAC    string `json:"mac"`
		} `json:"plan"`
		Argv []string `json:"argv"`
	}
	if err := json.Unmarshal([]byte(out), &dr); err != nil {
		t.Fatalf("dry-run JSON: %v\n%s", err, out)
	}
	argv := strings.Join(dr.Argv, " ")
	if dr.Plan.Mode != "bridge" || dr.Plan.Parent != "br0" || !strings.Contains(argv, "fds=3:4") || !strings.Contains(argv, "mac="+dr.Plan.MAC) {
		t.Fatalf("unexpected dry-run: %+v\n%s", dr.Plan, argv)
	}
	if after := snapshotLinks(t, l.Host); !reflect.DeepEqual(after, before) {
		t.Fatalf("dry-run changed links: %v → %v", before, after)
	}
	assertEmptyDir(t, runtime)
	// The human form prints the command shell-quoted on one line.
	out, _, code = RunVMRun(t, l.Host, runtime, "--disk", g.Test, "--net", "user", "--dry-run")
	if code != 0 || !strings.Contains(out, "qemu-system-x86_64 -name test") {
		t.Fatalf("dry-run text (exit %d):\n%s", code, out)
	}
	assertEmptyDir(t, runtime)
}

func TestNameUniqueAndLsStop(t *testing.T) {
	g := requireQEMUTests(t)
	ns := testutil.NewNetns(t, "n")
	runtime := runtimeDir(t)
	vm := Start(t, ns, runtime, "--disk", g.Test, "--snapshot", "--net", "user", "--name", "e2e-ls")
	vm.WaitConsole(`VMRUN-GUEST: ready`, bootTimeout)

	_, errOut, code := RunVMRun(t, ns, runtime, "--disk", g.Test, "--snapshot", "--net", "user", "--name", "e2e-ls")
	if code != 1 || !strings.Contains(errOut, "already running") {
		t.Fatalf("second VM with the same name: exit %d, %s", code, errOut)
	}

	out, _, code := RunVMRun(t, ns, runtime, "ls", "--json")
	var infos []struct {
		Name, Net, MAC, Status string
		PID                    int
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil || code != 0 {
		t.Fatalf("ls --json (exit %d): %v\n%s", code, err, out)
	}
	if len(infos) != 1 || infos[0].Name != "e2e-ls" || infos[0].Net != "user" || infos[0].Status != "running" || infos[0].PID != vm.PID() {
		t.Fatalf("ls: %+v (vmrun pid %d)", infos, vm.PID())
	}
	out, _, _ = RunVMRun(t, ns, runtime, "ls")
	if !strings.Contains(out, "e2e-ls") || !strings.Contains(out, "UPTIME") {
		t.Fatalf("ls table:\n%s", out)
	}

	_, errOut, code = RunVMRun(t, ns, runtime, "stop", "e2e-ls")
	if code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("vmrun exit %d after stop", code)
	}
	if !strings.Contains(vm.Console.String(), "reboot: Power down") && !strings.Contains(vm.Console.String(), "Power down") {
		t.Logf("console has no power-down line (the guest may print none)")
	}
	assertEmptyDir(t, runtime)
	_, errOut, code = RunVMRun(t, ns, runtime, "stop", "e2e-ls")
	if code != 1 || !strings.Contains(errOut, "no VM named") {
		t.Fatalf("stop of a stopped VM: exit %d: %s", code, errOut)
	}
}

// TestUnprivilegedTapRefused: a user without CAP_NET_ADMIN asking for a
// tap gets one sentence and exit 2, and nothing is left behind.
func TestUnprivilegedTapRefused(t *testing.T) {
	g := requireQEMUTests(t)
	ns := testutil.NewNetns(t, "np")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	runtime := runtimeDir(t)
	if err := os.Chmod(runtime, 0o777); err != nil {
		t.Fatal(err)
	}
	// The image must be readable by nobody: /tmp/TestX/ is 0700.
	imgDir, err := os.MkdirTemp("", "vrimg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(imgDir) })
	img := filepath.Join(imgDir, "test.qcow2")
	if err := os.Rename(copyFile(t, g.Test), img); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{imgDir: 0o755, img: 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshotLinks(t, ns)
	out, err := ns.Run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		"env", "VMRUN_RUNTIME_DIR="+runtime, vmrunBin, "--disk", img, "--snapshot", "--net", "bridge:br0")
	if err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("want exit status 2, got %v", err)
	}
	if !strings.Contains(out, "needs CAP_NET_ADMIN") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("want one line about CAP_NET_ADMIN, got:\n%s (%v)", out, err)
	}
	if after := snapshotLinks(t, ns); !reflect.DeepEqual(after, before) {
		t.Fatalf("links changed: %v → %v", before, after)
	}
	assertEmptyDir(t, runtime)

	// A disk the user cannot read: exit 1, the file named, the fix given.
	secret := filepath.Join(imgDir, "secret.qcow2")
	if err := os.WriteFile(secret, make([]byte, 512), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = ns.Run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		"env", "VMRUN_RUNTIME_DIR="+runtime, vmrunBin, "--disk", secret, "--net", "none")
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(out, secret+" cannot be read (permission denied)") {
		t.Fatalf("unreadable disk: %v\n%s", err, out)
	}
	assertEmptyDir(t, runtime)
}
