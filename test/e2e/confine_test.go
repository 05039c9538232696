package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/kvmcheck"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/launcher"
)

// The uid and gid the tests give vmrun as the user who "ran sudo".
const sudoUID, sudoGID = 4242, 4343

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("status of pid %d: %v", pid, err)
	}
	st := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	return st
}

// qemuPID returns the pid of the VM's QEMU from its state file (recorded
// when QEMU started, before the guest ran) and QEMU's command line.
func qemuPID(t *testing.T, vm *VM, name string) (int, string) {
	t.Helper()
	st, err := rundir.ReadState(filepath.Join(vm.Runtime, name))
	if err != nil || st.QEMUPID == 0 {
		t.Fatalf("no QEMU pid in the state of %s: %+v, %v", name, st, err)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(st.QEMUPID) + "/cmdline")
	if err != nil {
		t.Fatalf("QEMU's command line: %v", err)
	}
	return st.QEMUPID, strings.ReplaceAll(string(cmdline), "\x00", " ")
}

// wantConfined checks a process's status: the given ids, no capability in
// any set, no_new_privs, and (seccomp) QEMU's seccomp filter.
func wantConfined(t *testing.T, what string, st map[string]string, uid, gid int, seccomp bool) {
	t.Helper()
	u, g := strconv.Itoa(uid), strconv.Itoa(gid)
	want := map[string]string{
		"Uid": u + "\t" + u + "\t" + u + "\t" + u, "Gid": g + "\t" + g + "\t" + g + "\t" + g,
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapAmb": "0000000000000000", "NoNewPrivs": "1",
	}
	if seccomp {
		want["CapBnd"] = "0000000000000000"
		want["Seccomp"] = "2"
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("%s: %s is %q, want %q", what, k, st[k], v)
		}
	}
}

// defaultQEMUUser is who QEMU runs as when root runs vmrun outside sudo.
func defaultQEMUUser(t *testing.T) (uid, gid int) {
	u, err := user.Lookup("vmrun-qemu")
	if err != nil {
		return 65534, 65534
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// TestQEMUConfinedAsRoot: root runs vmrun (not through sudo) in user mode
// with passt. QEMU runs as vmrun-qemu (or nobody without vmrun setup) with
// no capabilities in any set, no_new_privs and its seccomp filter; passt
// runs without root and capabilities too; the guest reaches the network,
// and QEMU's command line names the runtime directory (what gc matches).
func TestQEMUConfinedAsRoot(t *testing.T) {
	g := requireQEMUTests(t)
	testutil.RequireCmd(t, "passt")
	l := newLAN(t, false) // passt needs a default route
	const name = "e2e-confined"
	// The guest fetches from the host through passt and serves a
	// forwarded port: the network works with QEMU and passt confined.
	userModeRoundTrip(t, g, l.Host, name, func(vm *VM) {
		pid, cmdline := qemuPID(t, vm, name)
		uid, gid := defaultQEMUUser(t)
		wantConfined(t, "QEMU", procStatus(t, pid), uid, gid, true)
		if !strings.Contains(cmdline, "opaque="+filepath.Join(vm.Runtime, name)) || strings.Contains(cmdline, "-pidfile") {
			t.Errorf("QEMU's command line does not name the runtime directory by an fdset label: %s", cmdline)
		}
		passtPID := recordedPasst(t, vm.Runtime, name)
		ps := procStatus(t, passtPID)
		if strings.HasPrefix(ps["Uid"], "0\t") || ps["CapEff"] != "0000000000000000" || ps["CapPrm"] != "0000000000000000" {
			t.Errorf("passt runs privileged: Uid %q CapEff %q CapPrm %q", ps["Uid"], ps["CapEff"], ps["CapPrm"])
		}
		t.Logf("passt: Uid %s CapEff %s CapBnd %s NoNewPrivs %s Seccomp %s", ps["Uid"], ps["CapEff"], ps["CapBnd"], ps["NoNewPrivs"], ps["Seccomp"])
	})
}

// userImage copies the test image into a directory others may search and
// gives it to the sudo test user, mode 0600: readable and writable by that
// user only (and root).
func userImage(t *testing.T, src string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vrq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	img := filepath.Join(dir, "user.qcow2")
	if err := os.Rename(copyFile(t, src), img); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(img, sudoUID, sudoGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(img, 0o600); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestQEMUConfinedSudoWritableDisk: through sudo, QEMU runs as the user who
// ran sudo, and a disk that user may write (not root's, not world-readable)
// is written by the guest.
func TestQEMUConfinedSudoWritableDisk(t *testing.T) {
	g := requireQEMUTests(t)
	const name = "e2e-sudo"
	img := userImage(t, g.Test)
	before := fileHash(t, img)
	runtime := runtimeDir(t)
	cmd := command(nil, runtime, "--disk", img, "--net", "none", "--name", name)
	cmd.Env = append(cmd.Env, "SUDO_UID="+strconv.Itoa(sudoUID), "SUDO_GID="+strconv.Itoa(sudoGID))
	vm := startCmd(t, cmd, runtime)
	vm.WaitConsole(`VMRUN-GUEST: disk written`, bootTimeout)
	pid, _ := qemuPID(t, vm, name)
	wantConfined(t, "QEMU", procStatus(t, pid), sudoUID, sudoGID, true)
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d\n%s", code, vm.Stderr)
	}
	if fileHash(t, img) == before {
		t.Fatal("the guest's write did not reach the user's image")
	}
	if fi, err := os.Stat(img); err != nil || fi.Sys().(*syscall.Stat_t).Uid != sudoUID || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the image's owner or mode changed: %v, %v", fi.Mode(), err)
	}
	assertEmptyDir(t, runtime)
}

// TestUnreadableDiskRefused: through sudo, a disk the user cannot read
// (root's, 0600) is refused before anything is created: exit 1, one line
// naming the file and the fix.
func TestUnreadableDiskRefused(t *testing.T) {
	g := requireQEMUTests(t)
	img := userImage(t, g.Test)
	if err := os.Chown(img, 0, 0); err != nil {
		t.Fatal(err)
	}
	runtime := runtimeDir(t)
	cmd := command(nil, runtime, "--disk", img, "--snapshot", "--net", "none")
	cmd.Env = append(cmd.Env, "SUDO_UID="+strconv.Itoa(sudoUID), "SUDO_GID="+strconv.Itoa(sudoGID))
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v:\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if strings.Count(line, "\n") != 0 || !strings.Contains(line, img+" cannot be read by uid 4242") || !strings.Contains(line, "--qemu-privileged") {
		t.Fatalf("want one line naming %s and the fix, got:\n%s", img, out)
	}
	assertEmptyDir(t, runtime)
}

// TestQEMUPrivileged: --qemu-privileged keeps QEMU as root, with its
// capabilities and without the seccomp filter.
func TestQEMUPrivileged(t *testing.T) {
	g := requireQEMUTests(t)
	const name = "e2e-priv"
	vm := Start(t, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--name", name, "--qemu-privileged")
	vm.WaitConsole(`VMRUN-GUEST: disk written`, bootTimeout)
	pid, cmdline := qemuPID(t, vm, name)
	st := procStatus(t, pid)
	if !strings.HasPrefix(st["Uid"], "0\t") || st["CapEff"] == "0000000000000000" || st["Seccomp"] != "0" {
		t.Errorf("--qemu-privileged: Uid %q CapEff %q Seccomp %q", st["Uid"], st["CapEff"], st["Seccomp"])
	}
	if strings.Contains(cmdline, "-sandbox") || !strings.Contains(cmdline, "-pidfile") {
		t.Errorf("--qemu-privileged command line: %s", cmdline)
	}
	// QEMU stays root, so it may open /dev/kvm: KVM when it works, else
	// TCG and the notice naming QEMU's reason.
	accel := "accel=tcg"
	why := kvmTruth(t)
	if launcher.KVMUsable() && why == "" {
		accel = "accel=kvm"
	}
	if !strings.Contains(cmdline, accel) {
		t.Errorf("--qemu-privileged command line without %s (KVM usable: %v, its probe: %q): %s", accel, launcher.KVMUsable(), why, cmdline)
	}
	if notice := launcher.KVMBroken(why) + "; using TCG"; launcher.KVMUsable() && why != "" && !strings.Contains(vm.Stderr.String(), notice) {
		t.Errorf("no notice %q in:\n%s", notice, vm.Stderr)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d\n%s", code, vm.Stderr)
	}
	assertEmptyDir(t, vm.Runtime)
}

// kvmTruth asks QEMU directly whether KVM works with vmrun's CPU model, as
// vmrun's probe does but without its cache: "" when it works or there is
// no /dev/kvm to try.
func kvmTruth(t *testing.T) string {
	t.Helper()
	if !launcher.KVMUsable() {
		return ""
	}
	why, final := launcher.ProbeKVM(testutil.RequireQEMU(t), kvmcheck.Timeout)
	if !final {
		t.Fatalf("probing KVM: %s", why)
	}
	return why
}

// TestAccelKVMProbe: with QEMU allowed to open /dev/kvm (--qemu-privileged),
// --accel auto picks KVM only when it works, and --accel kvm on a host
// whose KVM does not work (this project's CI machine: nested KVM without
// the features -cpu host needs) fails with exit 2 and one line naming
// QEMU's reason and the fix, leaving only the answer it keeps for this
// boot, which the next run reads.
func TestAccelKVMProbe(t *testing.T) {
	g := requireQEMUTests(t)
	why := kvmTruth(t)
	runtime := runtimeDir(t)
	args := []string{"--disk", g.Test, "--snapshot", "--net", "none", "--qemu-privileged", "--dry-run"}
	out, err := command(nil, runtime, append(args, "--accel", "auto")...).CombinedOutput()
	want := "accel=tcg"
	if launcher.KVMUsable() && why == "" {
		want = "accel=kvm"
	}
	if err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("--accel auto: %v, want %s (KVM usable: %v, its probe: %q):\n%s", err, want, launcher.KVMUsable(), why, out)
	}
	kept, err := os.ReadFile(filepath.Join(runtime, kvmcheck.CacheFile))
	if launcher.KVMUsable() && (err != nil || !strings.Contains(string(kept), fmt.Sprintf(`"why":%q`, why))) {
		t.Errorf("the probe's answer %q is not kept: %v %s", why, err, kept)
	}
	out, err = command(nil, runtime, append(args, "--accel", "kvm")...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case !launcher.KVMUsable():
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "/dev/kvm is missing or not usable") {
			t.Errorf("--accel kvm without /dev/kvm: %v, want exit 2:\n%s", err, out)
		}
	case why == "":
		if err != nil || !strings.Contains(string(out), "accel=kvm") {
			t.Errorf("--accel kvm with a working KVM: %v:\n%s", err, out)
		}
	default:
		line := strings.TrimSpace(string(out))
		wantLine := "vmrun: --accel kvm: " + launcher.KVMBroken(why) + "; " + launcher.KVMBrokenFix + ", or use --accel tcg"
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || line != wantLine {
			t.Errorf("--accel kvm with a KVM that does not work: %v, want exit 2 and %q, got:\n%s", err, wantLine, out)
		}
	}
	assertEmptyDir(t, runtime)
}

// sharedDir returns a directory for --share that QEMU's unprivileged user
// (nobody, when root runs vmrun outside sudo) may read and write: under
// /tmp, mode 0777. t.TempDir's directories are root's, mode 0700.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vrshare")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestShareUnreadableRefused: a --share directory QEMU's user cannot read
// is refused before anything is created: exit 1, one line naming it.
func TestShareUnreadableRefused(t *testing.T) {
	g := requireQEMUTests(t)
	share := t.TempDir() // root's, 0700
	runtime := runtimeDir(t)
	out, err := command(nil, runtime, "--disk", g.Test, "--snapshot", "--net", "none", "--share", share+":data:ro").CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v:\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if strings.Count(line, "\n") != 0 || !strings.Contains(line, "--share "+share+" cannot be read by") {
		t.Fatalf("want one line naming %s, got:\n%s", share, out)
	}
	assertEmptyDir(t, runtime)
}

// TestBackingChainAsFds: a qcow2 overlay whose backing file is named by a
// relative path, both in root's private directory, boots with QEMU as an
// unprivileged user: vmrun passes the image and its backing file as fds.
// The guest's write goes to the overlay; the backing file is unchanged.
func TestBackingChainAsFds(t *testing.T) {
	g := requireQEMUTests(t)
	qemuImg := testutil.RequireCmd(t, "qemu-img")
	dir := t.TempDir() // root's, 0700: QEMU's user cannot open anything here
	base := filepath.Join(dir, "base.qcow2")
	if err := os.Rename(copyFile(t, g.Test), base); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	baseHash, topHash := fileHash(t, base), fileHash(t, top)
	const name = "e2e-chain"
	vm := Start(t, nil, "", "--disk", top, "--net", "none", "--name", name, "-v")
	vm.WaitConsole(`VMRUN-GUEST: disk written`, bootTimeout)
	pid, cmdline := qemuPID(t, vm, name)
	uid, gid := defaultQEMUUser(t)
	wantConfined(t, "QEMU", procStatus(t, pid), uid, gid, true)
	if !strings.Contains(cmdline, "backing.driver=qcow2,backing.file.filename=/dev/fdset/1") || !strings.Contains(cmdline, "opaque="+base) {
		t.Errorf("the backing file is not passed as an fdset: %s", cmdline)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d\n%s", code, vm.Stderr)
	}
	if fileHash(t, base) != baseHash {
		t.Error("the backing file changed")
	}
	if fileHash(t, top) == topHash {
		t.Error("the guest's write did not reach the overlay")
	}
	if out, err := exec.Command(qemuImg, "info", top).CombinedOutput(); err != nil || !strings.Contains(string(out), "backing file: base.qcow2") {
		t.Errorf("the overlay's backing file name changed: %v\n%s", err, out)
	}
	assertEmptyDir(t, vm.Runtime)
}
