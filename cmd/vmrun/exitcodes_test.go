package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/kvmcheck"
	"github.com/vmrun/vmrun/internal/privdrop"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// TestMain lets a test run this test binary as vmrun itself (a real
// process with its own exit status): see vmrunProcess.
func TestMain(m *testing.M) {
	if os.Getenv(asVmrunEnv) == "1" {
		os.Exit(realMain(append([]string{"vmrun"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const asVmrunEnv = "VMRUN_TEST_AS_VMRUN"

// vmrunProcess returns a command running vmrun (this test binary in its
// vmrun role) with args, started by prefix (e.g. `ip netns exec NS`).
func vmrunProcess(ctx context.Context, prefix []string, args ...string) *exec.Cmd {
	self, _ := os.Executable()
	argv := append(append(append([]string{}, prefix...), self), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), asVmrunEnv+"=1")
	return cmd
}

// exitCase is one path from an error to an exit code.
type exitCase struct {
	name string
	args []string
	code int
	want string // in the one line on stderr; "" when the command succeeds
}

// checkExit runs vmrun in-process and checks code and message.
func checkExit(t *testing.T, c exitCase) {
	t.Helper()
	_, errOut, code := vmrun(t, c.args...)
	if code != c.code {
		t.Fatalf("vmrun %s: exit %d, want %d: %s", strings.Join(c.args, " "), code, c.code, errOut)
	}
	if c.want != "" && !strings.Contains(errOut, c.want) {
		t.Fatalf("vmrun %s: stderr %q lacks %q", strings.Join(c.args, " "), errOut, c.want)
	}
}

// TestExitCodes covers, command by command, every way an error becomes an
// exit code in cmd/vmrun (TestBadInputs adds the configuration errors of
// run; the launcher's tests the codes 3, 4 and 124 of a running VM;
// TestDoctorJSON doctor's verdict; TestExitCodesHost the plans refused for
// what the host lacks).
func TestExitCodes(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	d := disk(t)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A VM whose vmrun is gone: its directory and state, no lock holder.
	stale, _, err := rundir.Create(root, "stale")
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Update(func(s *rundir.State) { s.Name, s.PID = "stale", 1 }); err != nil {
		t.Fatal(err)
	}
	if err := stale.Close(); err != nil {
		t.Fatal(err)
	}
	// A VM whose vmrun is gone and left an object this build cannot undo.
	left, _, err := rundir.Create(root, "left")
	if err != nil {
		t.Fatal(err)
	}
	if err := left.Record(rundir.Object{Kind: "no-such-kind", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := left.Close(); err != nil {
		t.Fatal(err)
	}
	// A running VM holding its name.
	busy, _, err := rundir.Create(root, "busy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Remove() })
	run := func(args ...string) []string {
		return append([]string{"--disk", d, "--qemu", "/bin/true", "--console", "none"}, args...)
	}
	kvmCode, kvmWant := exitcode.Setup, "--accel kvm"
	if launcher.KVMUsable() && confine.KVMDenied(config.Spec{}) == "" {
		kvmCode, kvmWant = exitcode.OK, ""
	}
	cases := []exitCase{
		// run: configuration, then the plan, then the set-up.
		{"run: help", []string{"--help"}, exitcode.OK, ""},
		{"run: unknown flag", run("--bogus"), exitcode.Usage, "unknown flag --bogus"},
		{"run: stray argument", []string{"run", d}, exitcode.Usage, "unexpected argument"},
		{"run: config file", run("--config", "/nonexistent/vm.yaml"), exitcode.Usage, "/nonexistent/vm.yaml"},
		{"run: named QEMU missing", run("--qemu", "/nonexistent/qemu"), exitcode.Usage, "--qemu /nonexistent/qemu"},
		{"run: --accel kvm", run("--net", "none", "--accel", "kvm", "--dry-run"), kvmCode, kvmWant},
		{"run: --console gui without a display", run("--console", "gui"), exitcode.Usage, "no display"},
		{"run: plan refuses the request (user mode, --guest-ip)", run("--net", "user", "--guest-ip", "10.0.0.5/24"), exitcode.Usage, "--guest-ip"},
		{"run: plan refuses the request (forward without network)", run("--net", "none", "--forward", "tcp:8080:80"), exitcode.Usage, "--forward"},
		{"run: plan refuses the request (no such interface)", run("--net", "macvtap:vmrnosuch0"), exitcode.Usage, "vmrnosuch0 does not exist"},
		{"run: plan refuses the request (not a bridge)", run("--net", "bridge:lo"), exitcode.Usage, "lo is not a bridge"},
		{"run: name already running", run("--net", "none", "--name", "busy"), exitcode.Usage, `"busy" is already running`},
		{"run: a previous run's leftovers cannot be removed", run("--net", "none", "--name", "left"), exitcode.Setup, "run `vmrun gc`"},
		{"run: QEMU fails to start", run("--net", "none", "--name", "false", "--qemu", "/bin/false"), exitcode.Setup, "QEMU"},
		{"run: serial log not writable", run("--net", "none", "--name", "log", "--serial-log", "/nonexistent/dir/log"), exitcode.Usage, "--serial-log"},
		// ls
		{"ls", []string{"ls"}, exitcode.OK, ""},
		{"ls: stray flag", []string{"ls", "--bogus"}, exitcode.Usage, "unknown flag"},
		// stop (a VM that stops, and one that does not, in TestStopExitCodes)
		{"stop: no name", []string{"stop"}, exitcode.Usage, "one VM name"},
		{"stop: bad name", []string{"stop", "a/b"}, exitcode.Usage, `"a/b"`},
		{"stop: unknown VM", []string{"stop", "ghost"}, exitcode.Usage, `no VM named "ghost"`},
		{"stop: vmrun gone", []string{"stop", "stale"}, exitcode.Usage, "vmrun gc"},
		{"stop: two names", []string{"stop", "stale", "ghost"}, exitcode.Usage, `not "ghost" too`},
		{"stop: unknown flag after the name", []string{"stop", "stale", "--bogus"}, exitcode.Usage, "unknown flag --bogus"},
		{"stop: bad --wait after the name", []string{"stop", "stale", "--wait", "soon"}, exitcode.Usage, `--wait "soon"`},
		// net plan
		{"net plan: stray argument", []string{"net", "plan", "x"}, exitcode.Usage, "unexpected argument"},
		{"net plan: unknown mode", []string{"net", "plan", "--net", "wifi"}, exitcode.Usage, "unknown network mode"},
		{"net plan: bad MAC", []string{"net", "plan", "--mac", "zz"}, exitcode.Usage, `"zz"`},
		{"net plan: no such interface", []string{"net", "plan", "--net", "macvtap:vmrnosuch0"}, exitcode.Usage, "vmrnosuch0 does not exist"},
		{"net plan: none", []string{"net", "plan", "--net", "none"}, exitcode.OK, ""},
		// doctor (its verdict: TestDoctorJSON)
		{"doctor: stray argument", []string{"doctor", "x"}, exitcode.Usage, "unexpected argument"},
		// setup
		{"setup: stray argument", []string{"setup", "x"}, exitcode.Usage, "unexpected argument"},
		// unknown command
		{"unknown command", []string{"frobnicate", "--x"}, exitcode.Usage, ""},
	}
	if os.Geteuid() == 0 {
		// A group name groupadd refuses: setup fails before changing anything.
		cases = append(cases, exitCase{"setup: group cannot be made", []string{"setup", "--group", "no such group!"}, exitcode.Setup, "group no such group!"})
	} else {
		cases = append(cases, exitCase{"setup: not root", []string{"setup"}, exitcode.Usage, "must run as root"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkExit(t, c) })
	}
	// Paths that need the runtime root to be unusable.
	t.Run("runtime root is a file", func(t *testing.T) {
		t.Setenv(rundir.EnvRoot, notDir)
		for _, c := range []exitCase{
			{"run", run("--net", "none", "--name", "rt"), exitcode.Setup, notDir},
			{"ls", []string{"ls"}, exitcode.Setup, "cannot list " + notDir},
			{"stop", []string{"stop", "web"}, exitcode.Setup, "cannot list " + notDir},
			{"gc", []string{"gc"}, exitcode.Setup, "gc could not remove everything"},
		} {
			t.Run(c.name, func(t *testing.T) { checkExit(t, c) })
		}
	})
	t.Run("gc with nothing to do", func(t *testing.T) {
		t.Setenv(rundir.EnvRoot, t.TempDir())
		checkExit(t, exitCase{"gc", []string{"gc"}, exitcode.OK, ""})
	})
}

// TestStopExitCodes: stop ends 0 when the VM's vmrun exits, and 2 when it
// is still there after --wait. Stand-ins for the vmrun process: a sleep
// (SIGTERM ends it) and a sleep that ignores SIGTERM.
func TestStopExitCodes(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	live := func(name, script string) *exec.Cmd {
		// The script says "ready" when its signal disposition is set.
		cmd := exec.Command("sh", "-c", script)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			t.Fatalf("stand-in for vmrun said %q (%v)", line, err)
		}
		d, _, err := rundir.Create(root, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Remove() })
		if err := d.Update(func(s *rundir.State) { s.Name, s.PID = name, cmd.Process.Pid }); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// exec: the shell becomes sleep, so the pid is sleep's.
	live("stops", "echo ready; exec sleep 1000")
	live("stays", "trap '' TERM; echo ready; exec sleep 1000")
	checkExit(t, exitCase{"stop", []string{"stop", "stops"}, exitcode.OK, `"stops" stopped`})
	// The options as documented, after the name; and before it.
	checkExit(t, exitCase{"stop: still running after --wait", []string{"stop", "stays", "--wait", "50ms"}, exitcode.Setup, "still stopping after 50ms"})
	checkExit(t, exitCase{"stop: still running after --wait=", []string{"stop", "--wait=60ms", "stays"}, exitcode.Setup, "still stopping after 60ms"})
	checkExit(t, exitCase{"stop --force", []string{"stop", "stays", "--force"}, exitcode.OK, `"stays" stopped`})
}

// TestExitCodesHost: a plan refused for what the host lacks (here: no
// default route, in a fresh network namespace) is a set-up failure, exit 2,
// while the same namespace's refusal of the request itself stays 1.
//
// Then a set-up that fails after planning: a link that is not vmrun's
// already has the name of the tap vmrun would create (ErrForeignLink).
func TestExitCodesHost(t *testing.T) {
	ns := testutil.NewNetns(t, "exit")
	d := disk(t)
	rt := t.TempDir()
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	var plan struct {
		LinkName string `json:"link_name"`
	}
	{
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := vmrunProcess(ctx, []string{"ip", "netns", "exec", ns.Name}, "net", "plan", "--net", "bridge:br0", "--name", "taken", "--json")
		out, err := cmd.Output()
		cancel()
		if err := errors.Join(err, json.Unmarshal(out, &plan)); err != nil || plan.LinkName == "" {
			t.Fatalf("net plan --net bridge:br0: %v: %s", err, out)
		}
	}
	ns.MustRun(t, "ip", "link", "add", plan.LinkName, "type", "veth", "peer", "name", "exitpeer0")
	for _, c := range []exitCase{
		{"run: set-up meets a foreign link", []string{"--disk", d, "--qemu", "/bin/true", "--console", "none", "--net", "bridge:br0", "--name", "taken"}, exitcode.Setup, plan.LinkName},
		{"net plan: no default route", []string{"net", "plan", "--net", "routed"}, exitcode.Setup, "no default route"},
		{"run: no default route", []string{"--disk", d, "--qemu", "/bin/true", "--console", "none", "--net", "bridge"}, exitcode.Setup, "no default route"},
		{"run: request refused there too", []string{"--disk", d, "--qemu", "/bin/true", "--console", "none", "--net", "user", "--guest-ip", "10.0.0.5/24"}, exitcode.Usage, "--guest-ip"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := vmrunProcess(ctx, []string{"ip", "netns", "exec", ns.Name}, c.args...)
			cmd.Env = append(cmd.Env, rundir.EnvRoot+"="+rt)
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code || !strings.Contains(string(out), c.want) {
				t.Fatalf("vmrun %s in a namespace without a default route: exit %d, want %d with %q: %s", strings.Join(c.args, " "), code, c.code, c.want, out)
			}
		})
	}
	if links := strings.Join(ns.Links(t), " "); !strings.Contains(" "+links+" ", " "+plan.LinkName+" ") {
		t.Errorf("the foreign link %s is gone (links: %s)", plan.LinkName, links)
	}
	// Only the kernel's answers about link types and KVM (kept per boot) may stay.
	es, err := os.ReadDir(rt)
	es = slices.DeleteFunc(es, func(e os.DirEntry) bool { return e.Name() == netsetup.ProbeCacheFile || e.Name() == kvmcheck.CacheFile })
	if err != nil || len(es) != 0 {
		t.Errorf("runtime root %s: %d entries left, %v", rt, len(es), err)
	}
}

// TestSetupExitCodes: setup as root installs into a private directory
// (0), and a target it cannot write is a set-up failure (2). The
// allow-list goes to a private path too; nothing outside the test's
// directories is touched (the group is root's own, which exists).
func TestSetupExitCodes(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	old := aclPath
	aclPath = filepath.Join(dir, "etc", "allow.conf")
	t.Cleanup(func() { aclPath = old })
	// Setup creates QEMU's system user: a name of the test's own,
	// removed at cleanup, never the real vmrun-qemu.
	oldUser, qemuUser := privdrop.SystemUser, fmt.Sprintf("vmrtq%d", os.Getpid()%100000)
	privdrop.SystemUser = qemuUser
	t.Cleanup(func() {
		if _, err := user.Lookup(qemuUser); err == nil {
			if out, err := exec.Command("userdel", qemuUser).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v: %s", qemuUser, err, out)
			}
		}
		privdrop.SystemUser = oldUser
	})
	bin := filepath.Join(dir, "bin", "vmrun")
	checkExit(t, exitCase{"setup", []string{"setup", "--bin", bin, "--group", "root", "--allow", "lo", "--no-networkmanager"}, exitcode.OK, ""})
	if _, err := user.Lookup(privdrop.SystemUser); err != nil {
		t.Fatalf("setup did not create QEMU's user %s: %v", privdrop.SystemUser, err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("installed binary: %v, %v", fi, err)
	}
	if b, err := os.ReadFile(aclPath); err != nil || !strings.Contains(string(b), "allow lo\n") {
		t.Fatalf("allow-list: %q, %v", b, err)
	}
	// Without useradd (a minimal system) setup still succeeds and says
	// that QEMU's user is missing.
	privdrop.SystemUser = qemuUser + "x"
	t.Setenv("PATH", t.TempDir())
	_, errOut, code := vmrun(t, "setup", "--bin", bin, "--group", "root", "--allow", "lo", "--no-networkmanager")
	if code != exitcode.OK || !strings.Contains(errOut, "system user "+qemuUser+"x could not be created") {
		t.Fatalf("setup without useradd: exit %d, stderr %q", code, errOut)
	}
	privdrop.SystemUser = qemuUser
	checkExit(t, exitCase{"setup: binary cannot be installed", []string{"setup", "--bin", "/etc/passwd/vmrun", "--group", "root", "--no-networkmanager"}, exitcode.Setup, "install /etc/passwd/vmrun"})
}

// TestStopOtherUsersVM: `vmrun stop` by a user who may not signal the VM's
// vmrun (here: nobody, and a VM of root's) exits 2 and says whose it is.
// The runtime root is made readable to that user, as the system's is.
func TestStopOtherUsersVM(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := os.MkdirTemp("", "vmrun-stop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// This test binary, where nobody may run it, plays vmrun (TestMain).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vmrun")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "run")
	sleeper := exec.Command("sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	d, _, err := rundir.Create(root, "roots")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	if err := d.Update(func(s *rundir.State) { s.Name, s.PID = "roots", sleeper.Process.Pid }); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{dir: 0o755, root: 0o755, d.Path: 0o755,
		filepath.Join(d.Path, "lock"): 0o644, filepath.Join(d.Path, "state.json"): 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := vmrunProcess(ctx, nil, "stop", "roots")
	cmd.Path, cmd.Args[0], cmd.Dir = bin, bin, dir
	cmd.Env = append(cmd.Env, rundir.EnvRoot+"="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitcode.Setup || !strings.Contains(string(out), "belongs to another user") {
		t.Fatalf("stop as nobody: %v: %s", err, out)
	}
	// Still running, not a zombie waiting for us.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", sleeper.Process.Pid)); err != nil || strings.Contains(string(st), ") Z ") {
		t.Fatalf("root's VM was stopped by nobody: %s %v", st, err)
	}
}
