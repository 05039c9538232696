package rundir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"web", "ci-vm.1", "A_b", strings.Repeat("x", MaxNameLen)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "../x", ".hidden", "-x", "sp ace", strings.Repeat("x", MaxNameLen+1), "é"} {
		if err := ValidateName(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCreateLockAndRemove(t *testing.T) {
	root := t.TempDir()
	d, stale, err := Create(root, "vm1")
	if err != nil || stale != nil {
		t.Fatalf("Create: %v, stale %v", err, stale)
	}
	fi, err := os.Stat(d.Path)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("runtime dir mode %v, %v", fi.Mode(), err)
	}
	if _, _, err := Create(root, "vm1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Create: %v, want ErrBusy", err)
	}
	es, err := List(root)
	if err != nil || len(es) != 1 || !es[0].Live {
		t.Fatalf("List = %+v, %v", es, err)
	}
	if e, ok, err := Lookup(root, "vm1"); err != nil || !ok || !e.Live || e.Path != d.Path {
		t.Fatalf("Lookup(vm1) = %+v, %v, %v", e, ok, err)
	}
	if p, live, err := Live(root, "vm1"); err != nil || !live || p != d.Path {
		t.Fatalf("Live(vm1) = %q, %v, %v", p, live, err)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Fatalf("dir left behind: %v", err)
	}
	if _, ok, err := Lookup(root, "vm1"); ok || err != nil {
		t.Fatalf("Lookup after Remove: %v, %v", ok, err)
	}
	if _, live, err := Live(root, "vm1"); live || err != nil {
		t.Fatalf("Live after Remove: %v, %v", live, err)
	}
	if _, ok, err := Lookup(filepath.Join(root, "none"), "vm1"); ok || err != nil {
		t.Fatalf("Lookup under a missing root: %v, %v", ok, err)
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Lookup(file, "vm1"); err == nil {
		t.Fatal("Lookup under a root that is a file: no error")
	}
}

// TestLockHeldByOtherProcess checks the lock across processes, as between
// two vmrun runs: a child process (this test binary, see holdLockChild)
// holds the lock while we look and try.
func TestLockHeldByOtherProcess(t *testing.T) {
	testLockHeldByOtherProcess(t, false)
}

// TestLockHeldByOlderVmrun: a VM started by a vmrun from before the lock
// was an OFD lock holds only a flock; a start (and so gc, which takes
// the lock the same way) must not take it over.
func TestLockHeldByOlderVmrun(t *testing.T) {
	testLockHeldByOtherProcess(t, true)
}

func testLockHeldByOtherProcess(t *testing.T, flock bool) {
	root := t.TempDir()
	d, _, err := Create(root, "vm2")
	if err != nil {
		t.Fatal(err)
	}
	d.lock.Close() // as if this vmrun were gone
	d.lock = nil
	if es, _ := List(root); len(es) != 1 || es[0].Live {
		t.Fatalf("List after the holder closed its lock = %+v", es)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLockChild$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+filepath.Join(d.Path, "lock"))
	if flock {
		cmd.Env = append(cmd.Env, holdFlockEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The child says "locked" once it holds the lock.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("lock-holding child said %q (%v)", line, err)
	}
	if es, _ := List(root); !flock && (len(es) != 1 || !es[0].Live) {
		t.Fatalf("List while another process holds the lock = %+v", es)
	}
	if _, _, err := Create(root, "vm2"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Create while another process holds the lock: %v", err)
	}
	// The child lets go when its stdin closes, and exits.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("lock-holding child: %v", err)
	}
	d2, _, err := Create(root, "vm2")
	if err != nil {
		t.Fatalf("Create after the other process exited: %v", err)
	}
	_ = d2.Remove()
}

const (
	holdLockEnv  = "VMRUN_TEST_HOLD_LOCK"
	holdFlockEnv = "VMRUN_TEST_HOLD_FLOCK"
)

// TestHoldLockChild is the child of TestLockHeldByOtherProcess: it takes
// the lock of the file named by $VMRUN_TEST_HOLD_LOCK as vmrun does, says
// so, and holds it until its stdin closes. Run directly, it does nothing.
func TestHoldLockChild(t *testing.T) {
	path := os.Getenv(holdLockEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	lock := lockFile
	if os.Getenv(holdFlockEnv) == "1" { // as vmrun did before its lock was an OFD lock
		lock = func(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }
	}
	if err := lock(f); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	f.Close()
}

func TestStaleStateSurvives(t *testing.T) {
	root := t.TempDir()
	d, _, err := Create(root, "vm3")
	if err != nil {
		t.Fatal(err)
	}
	obj := Object{Kind: "link", Name: "vmrabcdef01m", Detail: map[string]string{"type": "macvtap"}}
	if err := d.Update(func(s *State) { s.Name, s.PID, s.Netns, s.NetnsInode = "vm3", 42, "c7", 4026531840 }); err != nil {
		t.Fatal(err)
	}
	if err := d.Record(obj); err != nil {
		t.Fatal(err)
	}
	d.lock.Close() // crash: the lock goes, the directory stays
	es, _ := List(root)
	if len(es) != 1 || es[0].Live || es[0].State == nil || len(es[0].State.Objects) != 1 {
		t.Fatalf("List after crash = %+v", es)
	}
	d2, stale, err := Create(root, "vm3")
	if err != nil || stale == nil || len(stale.Objects) != 1 || stale.Objects[0].Name != obj.Name {
		t.Fatalf("Create after crash: %v, stale %+v", err, stale)
	}
	// Recording something new before the stale objects are cleared keeps them.
	if err := d2.Record(Object{Kind: "link", Name: "other"}); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(d2.Path)
	if err != nil || len(st.Objects) != 2 {
		t.Fatalf("stale objects lost: %+v, %v", st, err)
	}
	// So is where they live (gc undoes them only from there).
	if st.Netns != "c7" || st.NetnsInode != 4026531840 {
		t.Fatalf("the stale objects' network namespace lost: %q %d", st.Netns, st.NetnsInode)
	}
	if err := d2.Forget(obj); err != nil {
		t.Fatal(err)
	}
	if st := d2.State(); len(st.Objects) != 1 || st.Objects[0].Name != "other" {
		t.Fatalf("Forget: %+v", st)
	}
	// The file catches up with the next write; until then it still lists
	// the forgotten object, which gc would undo again harmlessly.
	if err := d2.Update(func(*State) {}); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadState(d2.Path); len(st.Objects) != 1 || st.Objects[0].Name != "other" {
		t.Fatalf("Forget then Update: %+v", st)
	}
	_ = d2.Remove()
}

func TestSocketPathLimit(t *testing.T) {
	d := &Dir{Path: "/run/" + strings.Repeat("d", 100)}
	if _, err := d.Socket("qmp.sock"); err == nil || !strings.Contains(err.Error(), EnvRoot) {
		t.Fatalf("long socket path accepted: %v", err)
	}
	d.Path = "/run/vmrun/web"
	if p, err := d.Socket("qmp.sock"); err != nil || p != "/run/vmrun/web/qmp.sock" {
		t.Fatalf("Socket = %q, %v", p, err)
	}
}

func TestRootOverride(t *testing.T) {
	t.Setenv(EnvRoot, "/tmp/x")
	if Root() != "/tmp/x" {
		t.Fatal(Root())
	}
}

// TestFlush: Flush syncs the state file as last written and changes
// nothing; after Remove there is nothing to flush.
func TestFlush(t *testing.T) {
	d, _, err := Create(t.TempDir(), "vm5")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush before any write: %v", err)
	}
	if err := d.Update(func(s *State) { s.QEMUPID = 4242 }); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(d.Path)
	if err != nil || st.QEMUPID != 4242 {
		t.Fatalf("state after Flush: %+v, %v", st, err)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush after Remove: %v", err)
	}
	if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
		t.Fatalf("Flush after Remove left %s: %v", d.Path, err)
	}
}
