package netsetup_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/gc"
)

// TestGCAfterKill runs vmrun's set-up in a child process, SIGKILLs it
// after each step (the last one: with a QEMU stand-in holding the fds), and
// checks that GC leaves the namespace as it was.
func TestGCAfterKill(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	l.bridged(t)
	for _, mode := range []netsetup.Mode{netsetup.Macvtap, netsetup.Bridge} {
		p := l.plan(t, netsetup.Request{Mode: mode, Parent: "br0", Name: "gc-" + string(mode), Queues: 2})
		var steps []string
		for k := 1; ; k++ {
			step := crashAndGC(t, l, p, k)
			steps = append(steps, step)
			if step == "qemu" || t.Failed() {
				break
			}
		}
		t.Logf("%s: killed after each of %v", mode, steps)
	}
}

// crashAndGC kills the set-up after step k and collects; it returns the
// name of step k.
func crashAndGC(t *testing.T, l *lab, p netsetup.Plan, k int) string {
	t.Helper()
	root := t.TempDir()
	h := startHelper(t, "crash", []string{
		helperNetns + "=" + l.host.Path, helperRoot + "=" + root, helperPlan + "=" + planJSON(t, p), helperCrashAt + "=" + strconv.Itoa(k),
	})
	if _, err := h.out.WaitFor(`BLOCKED|ERROR`, helperBound); err != nil || strings.Contains(h.out.String(), "ERROR") {
		t.Fatalf("step %d: %v\n%s", k, err, h.out)
	}
	step := h.field(fmt.Sprintf("STEP %d", k))
	st, _ := rundir.ReadState(filepath.Join(root, p.Name))
	if err := syscall.Kill(h.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = h.wait(t, helperBound)
	qemu := 0
	if st != nil && st.QEMUPID != 0 {
		qemu = st.QEMUPID
		t.Cleanup(func() { killIfCmdline(qemu, root) })
	}

	var removed []string
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	if err := l.host.Do(func() error {
		var err error
		removed, err = gc.GC(root, logf)
		return err
	}); err != nil {
		t.Errorf("%s after step %d (%s): GC: %v", p.Mode, k, step, err)
	}
	if !slices.Equal(removed, []string{p.Name}) {
		t.Errorf("%s after step %d (%s): GC removed %v; logs %q", p.Mode, k, step, removed, logs)
	}
	l.assertClean(t)
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("runtime root still holds %v", left)
	}
	if qemu != 0 && running(qemu) {
		t.Errorf("the QEMU stand-in (pid %d) survived GC", qemu)
	}
	if step == "qemu" && qemu == 0 {
		t.Errorf("the state recorded no QEMU pid")
	}
	return step
}

// running reports whether pid is alive and not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// killIfCmdline kills a process this test started indirectly, by pid,
// if it is still the one whose command line names root.
func killIfCmdline(pid int, root string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && strings.Contains(string(b), root) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestGCLeavesOthersAlone: GC kills a recorded QEMU pid only when its
// command line names the VM's directory, and skips live VMs.
func TestGCLeavesOthersAlone(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	root := t.TempDir()

	// A dead VM whose recorded "QEMU" pid is an unrelated process.
	sleeper := exec.Command("sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	// A child process writes its state and dies, releasing the lock.
	h := startHelper(t, "mkstate", []string{helperRoot + "=" + root, helperPlan + "=" + planJSON(t, netsetup.Plan{Name: "dead"}),
		helperCrashAt + "=" + strconv.Itoa(sleeper.Process.Pid)})
	if err := h.wait(t, helperBound); err != nil {
		t.Fatalf("mkstate: %v\n%s", err, h.out)
	}

	// A live VM with a recorded link that GC must not touch.
	live, _, err := rundir.Create(root, "live")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Remove() })
	p := macvtapPlan(t, l, "live", 1)
	a, err := l.apply(t, ctxT(t, 30*time.Second), p, live)
	if err != nil {
		t.Fatal(err)
	}

	var removed []string
	if err := l.host.Do(func() error {
		removed, err = gc.GC(root, t.Logf)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"dead"}) {
		t.Errorf("removed %v, want [dead]", removed)
	}
	if !running(sleeper.Process.Pid) {
		t.Error("GC killed a process that was not the VM's QEMU")
	}
	if _, err := l.link(t, p.LinkName); err != nil {
		t.Errorf("GC removed the live VM's link: %v", err)
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	l.assertClean(t)
}
