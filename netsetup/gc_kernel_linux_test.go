package netsetup_test

import (
	"errors"
	"fmt"
	"net"
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
	"github.com/vmrun/vmrun/internal/testutil"
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

// TestUndoObjects: every kind Undo knows, idempotence, other namespaces.
func TestUndoObjects(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	fwd := "net/ipv4/conf/up0/forwarding"
	old := strings.TrimSpace(l.host.MustRun(t, "cat", "/proc/sys/"+fwd))
	l.host.MustRun(t, "sh", "-c", "echo 1 > /proc/sys/"+fwd)
	l.host.MustRun(t, "ip", "link", "add", "vmrgone0", "link", "up0", "type", "macvtap")
	l.host.MustRun(t, "ip", "link", "set", "vmrgone0", "alias", "vmrun:undo")
	objs := []rundir.Object{
		netsetup.SysctlObject(fwd, old),
		netsetup.LinkObject("undo", "vmrgone0", "macvtap", nil),
		netsetup.LinkObject("undo", "vmrnever0", "macvtap", nil), // never created: fine
		netsetup.SysctlObject("net/ipv4/conf/nosuchif/forwarding", "0"),
		netsetup.ProcessObject(1, "/nonexistent/vmrun/dir"), // pid 1 never matches
	}
	for i := range 2 { // the second round finds everything undone already
		if err := l.host.Do(func() error { return gc.Undo(objs) }); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if got := strings.TrimSpace(l.host.MustRun(t, "cat", "/proc/sys/"+fwd)); got != old {
		t.Errorf("forwarding %s, want %s restored", got, old)
	}
	l.assertClean(t)

	// An object in another namespace, named by path; a vanished namespace is fine.
	other := testutil.NewNetns(t, "o")
	other.MustRun(t, "ip", "link", "add", "vmrns0", "type", "veth", "peer", "name", "vmrns1")
	other.MustRun(t, "ip", "link", "set", "vmrns0", "alias", "vmrun:undo")
	o := netsetup.LinkObject("undo", "vmrns0", "veth", nil)
	o.Netns = other.Path
	gone := netsetup.LinkObject("undo", "x", "veth", nil)
	gone.Netns = "/run/netns/vmrun-no-such-namespace"
	if err := gc.Undo([]rundir.Object{o, gone}); err != nil {
		t.Fatal(err)
	}
	if links := other.Links(t); slices.Contains(links, "vmrns0") {
		t.Errorf("vmrns0 survived: %v", links)
	}

	err := gc.Undo([]rundir.Object{{Kind: "no-such-kind", Name: "vmrun-x"}})
	if !errors.Is(err, netsetup.ErrUnknownObject) {
		t.Errorf("unknown kind: %v", err)
	}
}

// TestUndoRoutesNeighboursAddresses: the routed/ipvtap kinds, including
// proxy entries, IPv6, and objects whose link is already gone.
func TestUndoRoutesNeighboursAddresses(t *testing.T) {
	ns := testutil.NewNetns(t, "r")
	ns.MustRun(t, "ip", "link", "add", "vmrr0", "type", "veth", "peer", "name", "vmrr1")
	ns.MustRun(t, "ip", "link", "set", "vmrr0", "up")
	ns.MustRun(t, "ip", "addr", "add", "169.254.0.1/32", "dev", "vmrr0")
	ns.MustRun(t, "ip", "route", "add", "10.9.0.7/32", "dev", "vmrr0")
	ns.MustRun(t, "ip", "-6", "route", "add", "fd00::7/128", "dev", "vmrr0")
	ns.MustRun(t, "ip", "neigh", "add", "proxy", "10.9.0.7", "dev", "vmrr1")
	ns.MustRun(t, "ip", "neigh", "add", "10.9.0.8", "lladdr", "52:54:00:00:00:08", "dev", "vmrr0", "nud", "permanent")
	mustCIDR := func(s string) *net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	objs := []rundir.Object{
		netsetup.AddrObject(mustCIDR("169.254.0.1/32"), "vmrr0"),
		netsetup.RouteObject(mustCIDR("10.9.0.7/32"), "vmrr0"),
		netsetup.RouteObject(mustCIDR("fd00::7/128"), "vmrr0"),
		netsetup.NeighObject(net.ParseIP("10.9.0.7"), "vmrr1", true),
		netsetup.NeighObject(net.ParseIP("10.9.0.8"), "vmrr0", false),
		netsetup.RouteObject(mustCIDR("10.9.9.9/32"), "vmrgone"), // link gone: nothing to do
	}
	for i := range 2 {
		if err := ns.Do(func() error { return gc.Undo(objs) }); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	for _, c := range [][]string{
		{"ip", "-4", "addr", "show", "dev", "vmrr0"},
		{"ip", "route", "show", "dev", "vmrr0"},
		{"ip", "-6", "route", "show", "fd00::7/128"},
		{"ip", "neigh", "show", "proxy"},
		{"ip", "neigh", "show", "10.9.0.8"},
	} {
		out := ns.MustRun(t, c[0], c[1:]...)
		for _, bad := range []string{"169.254.0.1", "10.9.0.7", "fd00::7", "10.9.0.8"} {
			if strings.Contains(out, bad) {
				t.Errorf("%v still shows %s:\n%s", c, bad, out)
			}
		}
	}
}
