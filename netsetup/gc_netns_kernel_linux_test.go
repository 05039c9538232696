package netsetup_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/gc"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// TestGCOtherNetns: gc undoes a dead VM's objects only from the network
// namespace its vmrun ran in. From another one gc refuses, naming where to
// run it, while that namespace exists; once the namespace is gone, its
// links went with it, and gc removes the record without touching the
// same-named links of the namespace gc runs in.
func TestGCOtherNetns(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	other := testutil.NewNetns(t, "o")
	root := t.TempDir()
	gcIn := func(ns *testutil.Netns) (removed []string, err error) {
		err = ns.Do(func() error {
			var gerr error
			removed, gerr = gc.GC(root, t.Logf)
			return gerr
		})
		return removed, err
	}

	// A VM of l.host dies: its macvtap link stays there, recorded.
	away := createDir(t, root, "away")
	p := macvtapPlan(t, l, "away", 1)
	if _, err := l.apply(t, ctxT(t, 30*time.Second), p, away); err != nil {
		t.Fatal(err)
	}
	if err := l.host.Do(func() error {
		id, ino, err := netsetup.Netns()
		if err != nil {
			return err
		}
		return away.Update(func(st *rundir.State) { st.Netns, st.NetnsInode = id, ino })
	}); err != nil {
		t.Fatal(err)
	}
	if err := away.Close(); err != nil {
		t.Fatal(err)
	}
	// `vmrun ls` names the command gc asks for below.
	awaySt, err := rundir.ReadState(filepath.Join(root, "away"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := map[string]string{}
	for _, ns := range []*testutil.Netns{other, l.host} {
		if err := ns.Do(func() error { cmds[ns.Name] = gc.Command(awaySt); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if want := "ip netns exec " + l.host.Name + " vmrun gc"; cmds[other.Name] != want || cmds[l.host.Name] != "vmrun gc" {
		t.Errorf("gc.Command from another namespace %q, from the VM's %q; want %q and `vmrun gc`", cmds[other.Name], cmds[l.host.Name], want)
	}
	// Twice: the record gc keeps still says where the links are.
	for range 2 {
		removed, err := gcIn(other)
		if !errors.Is(err, gc.ErrOtherNetns) || !strings.Contains(err.Error(), "ip netns exec "+l.host.Name+" vmrun gc") || len(removed) != 0 {
			t.Fatalf("gc in another namespace: removed %v, %v; want nothing removed and an error naming `ip netns exec %s vmrun gc`", removed, err, l.host.Name)
		}
	}
	if _, err := l.link(t, p.LinkName); err != nil {
		t.Fatalf("the link is gone after gc in another namespace refused: %v", err)
	}
	if removed, err := gcIn(l.host); err != nil || !slices.Equal(removed, []string{"away"}) {
		t.Fatalf("gc in the VM's namespace: removed %v, %v", removed, err)
	}
	if _, err := l.link(t, p.LinkName); err == nil {
		t.Fatal("gc in the VM's namespace left its link")
	}

	// A VM recorded in a namespace that is gone (its thread unshared it and
	// ended), with the objects of a live VM of l.host: same names, same
	// aliases.
	gone := make(chan error, 1)
	var goneID string
	var goneIno uint64
	go func() {
		runtime.LockOSThread() // never unlocked: the namespace ends with the thread
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			gone <- err
			return
		}
		var err error
		goneID, goneIno, err = netsetup.Netns()
		gone <- err
	}()
	if err := <-gone; err != nil {
		t.Fatal(err)
	}
	live := createDir(t, root, "live")
	pl := macvtapPlan(t, l, "live", 1)
	a, err := l.apply(t, ctxT(t, 30*time.Second), pl, live)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Undo(); _ = live.Remove() })
	st, err := rundir.ReadState(filepath.Join(root, "live"))
	if err != nil || len(st.Objects) == 0 {
		t.Fatalf("the live VM's record: %v, %v", st, err)
	}
	ghost := createDir(t, root, "ghost")
	if err := ghost.Update(func(s *rundir.State) {
		s.Name, s.Netns, s.NetnsInode, s.Objects = "ghost", goneID, goneIno, st.Objects
	}); err != nil {
		t.Fatal(err)
	}
	if err := ghost.Close(); err != nil {
		t.Fatal(err)
	}
	// The NAT state a NAT network of the gone namespace left (its bridge,
	// table and sysctls went with the namespace), and that of a namespace
	// that is still there.
	goneNAT := filepath.Join(root, ".nat", goneID)
	var otherID string
	if err := other.Do(func() (err error) { otherID, _, err = netsetup.Netns(); return err }); err != nil {
		t.Fatal(err)
	}
	otherNAT := filepath.Join(root, ".nat", otherID)
	for _, f := range []string{filepath.Join(goneNAT, "lock"), filepath.Join(goneNAT, "state.json"), filepath.Join(goneNAT, "members", "ghost.json"), filepath.Join(otherNAT, "lock")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ghostSt, err := rundir.ReadState(filepath.Join(root, "ghost"))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Do(func() error {
		if got := gc.Command(ghostSt); got != "vmrun gc" {
			t.Errorf("gc.Command of a record whose namespace is gone: %q, want `vmrun gc`", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if removed, err := gcIn(l.host); err != nil || !slices.Equal(removed, []string{"ghost"}) {
		t.Fatalf("gc of a VM whose namespace is gone: removed %v, %v", removed, err)
	}
	if _, err := l.link(t, pl.LinkName); err != nil {
		t.Fatalf("gc of a VM whose namespace is gone removed a same-named link here: %v", err)
	}
	if _, err := os.Stat(goneNAT); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gc left the NAT state directory of the gone namespace (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(otherNAT, "lock")); err != nil {
		t.Errorf("gc touched the NAT state of a namespace that is still there: %v", err)
	}
}

// TestGCOtherNetnsHeldByProcess: a VM's namespace that no mount holds but
// a process does is still there: gc elsewhere refuses and names the
// process's namespace file to enter.
func TestGCOtherNetnsHeldByProcess(t *testing.T) {
	l := newLab(t)
	t.Parallel()
	root := t.TempDir()
	// A process in a network namespace of its own, which no mount holds;
	// it says so once inside, then sleeps there.
	holder := exec.Command("unshare", "--net", "sh", "-c", "echo in; exec sleep 300")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "in\n" {
		t.Fatalf("unshare --net: %q, %v", line, err)
	}
	nsFile := "/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/net"
	ino, err := hostnet.NetnsInode(nsFile)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if err := hostnet.InNetns(nsFile, func() error {
		var err error
		id, err = hostnet.NetnsID()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	d := createDir(t, root, "held")
	if err := d.Update(func(s *rundir.State) {
		s.Name, s.Netns, s.NetnsInode = "held", id, ino
		s.Objects = []rundir.Object{{Kind: "link", Name: "vmrheld0m", Detail: map[string]string{"alias": "vmrun:held"}}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	var removed []string
	err = l.host.Do(func() error {
		var gerr error
		removed, gerr = gc.GC(root, t.Logf)
		return gerr
	})
	if !errors.Is(err, gc.ErrOtherNetns) || !strings.Contains(err.Error(), "nsenter --net="+nsFile+" vmrun gc") || len(removed) != 0 {
		t.Fatalf("gc: removed %v, %v; want nothing removed and an error naming `nsenter --net=%s vmrun gc`", removed, err, nsFile)
	}
}

// createDir makes and locks the runtime directory of VM name under root.
func createDir(t *testing.T, root, name string) *rundir.Dir {
	t.Helper()
	d, _, err := rundir.Create(root, name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
