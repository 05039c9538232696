package nat

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// The NAT network of a network namespace is shared by every NAT VM in it,
// whichever vmrun process runs them. Its state lives in a directory of the
// runtime root named after the namespace (StateDir):
//
//	lock            flock'ed around every join and leave
//	state.json      the subnet and the shared objects (bridge, nft table,
//	                sysctls with their old values), recorded before creation
//	members/VM.json one per NAT VM, flock'ed by its vmrun for as long as it
//	                runs: a member whose file nobody locks is dead
//	leases/ADDR     the VM holding each guest address (created O_EXCL)
//
// The last VM to leave (or `vmrun gc`, for dead ones) removes the bridge
// and the table and restores the sysctls — but only while no tap is left on
// the bridge, which also protects the VMs of a vmrun using another runtime
// root.

// shared is the content of state.json.
type shared struct {
	Subnet  string          `json:"subnet"`
	Objects []rundir.Object `json:"objects,omitempty"`
}

// memberInfo is the content of members/VM.json.
type memberInfo struct {
	VM       string            `json:"vm"`
	PID      int               `json:"pid"`
	IP       string            `json:"ip"`
	Forwards []hostnet.Forward `json:"forwards,omitempty"`
}

// StateDir returns the NAT state directory of the calling thread's
// network namespace under runtime root root.
func StateDir(root string) (string, error) {
	id, err := hostnet.NetnsID()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".nat", id), nil
}

// lockedDir is a locked NAT state directory.
type lockedDir struct {
	path string
	lock *os.File
	// unsynced: the state file was written and not yet made durable
	// (flushShared).
	unsynced bool
}

// lockDir creates (if create) and locks dir. It returns nil, nil when
// dir (or its lock file) does not exist and create is false.
//
// A crash may leave the directory without its lock file (a joiner killed
// before it made the lock; a leaver killed after it removed it): gc takes
// such a directory over with create (Sweep), so the subdirectories are
// made only under the lock, and a creator whose directory vanished between
// its mkdir and its open (gc removed it) simply tries again.
func lockDir(dir string, create bool) (*lockedDir, error) {
	for tries := 0; ; tries++ {
		if create {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				if errors.Is(err, os.ErrNotExist) && tries < 100 {
					continue // a gc removed a parent meanwhile
				}
				return nil, fmt.Errorf("NAT state directory: %w", err)
			}
		}
		flags := os.O_RDWR
		if create {
			flags |= os.O_CREATE
		}
		f, err := os.OpenFile(filepath.Join(dir, "lock"), flags, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			if !create {
				return nil, nil
			}
			if tries < 100 {
				continue // a gc removed the empty directory meanwhile
			}
		}
		if err != nil {
			return nil, fmt.Errorf("NAT state directory: %w", err)
		}
		if err := flockRetry(f, unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		// The last leaver removes the directory under the lock: a file
		// locked after that is no longer the directory's lock.
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(filepath.Join(dir, "lock"), &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			d := &lockedDir{path: dir, lock: f}
			if create {
				for _, sub := range []string{"members", "leases"} {
					if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
						f.Close()
						return nil, fmt.Errorf("NAT state directory: %w", err)
					}
				}
			}
			return d, nil
		}
		f.Close()
		if !create {
			return nil, nil
		}
	}
}

// remove deletes the locked directory: everything but the lock file, then
// the lock file, then the directory (and .nat, when it is empty). A crash
// on the way leaves either the lock file, and gc finds the directory as
// usual, or a directory without it, which gc takes over (Sweep).
func (d *lockedDir) remove() error {
	des, err := os.ReadDir(d.path)
	if err != nil {
		return err
	}
	for _, de := range des {
		if de.Name() == "lock" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(d.path, de.Name())); err != nil {
			return err
		}
	}
	if err := removeIfExists(filepath.Join(d.path, "lock")); err != nil {
		return err
	}
	// Not empty: a new joiner made its lock file meanwhile; the directory
	// is its now.
	if err := os.Remove(d.path); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(filepath.Dir(d.path)) // .nat, when no other namespace has state there
	return nil
}

func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (d *lockedDir) unlock() { d.lock.Close() }

func (d *lockedDir) readShared() (shared, error) {
	var st shared
	b, err := os.ReadFile(filepath.Join(d.path, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// writeShared replaces state.json with st (a temporary file, then a
// rename: a reader sees the old state or the new one). Only a durable
// write waits for the disk (fsync): the records made before each object
// need none, by the argument of docs/architecture.md's "Crash safety" — a
// process's death, however abrupt, does not touch the page cache, and a
// crash of the kernel takes the recorded objects with it. A set-up writes
// the state once, before the objects it records (prerecord); making that
// write durable leaves a consistent file behind should the machine go
// down: flushShared, which the set-up starts once it has released the
// lock and does not wait for (only the machine's own crash needs it; the
// wait was on the first NAT VM's path). A non-durable write marks d
// unsynced, which is what tells the set-up to start it.
func (d *lockedDir) writeShared(st shared, durable bool) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if !durable {
		d.unsynced = true
	}
	return writeFileAtomic(filepath.Join(d.path, "state.json"), b, durable)
}

// flushShared waits for the disk to hold NAT directory dir's state file
// as last written, and the directory entry naming it. It takes no lock:
// a later writer's file is as good, and a directory removed meanwhile
// (the last VM left) needs nothing.
func flushShared(dir string) {
	for _, p := range []string{filepath.Join(dir, "state.json"), dir} {
		if f, err := os.Open(p); err == nil {
			_ = f.Sync()
			f.Close()
		}
	}
}

func writeFileAtomic(path string, b []byte, durable bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}

// record appends obj to the shared objects and writes the state before
// the object is created (not durably: see writeShared), unless obj is
// recorded already (prerecord did it): then it writes nothing.
func (d *lockedDir) record(st *shared, obj rundir.Object) error {
	if recorded(st, obj) {
		return nil
	}
	st.Objects = append(st.Objects, obj)
	return d.writeShared(*st, false)
}

// recorded reports whether st records an object of obj's kind and name.
func recorded(st *shared, obj rundir.Object) bool {
	for _, o := range st.Objects {
		if o.Kind == obj.Kind && o.Name == obj.Name {
			return true
		}
	}
	return false
}

// member is one members/VM.json: its VM and whether a live vmrun holds it.
type member struct {
	info memberInfo
	live bool
}

// members reads every member file; live ones are locked by their vmrun.
func (d *lockedDir) members() (map[string]member, error) {
	des, err := os.ReadDir(filepath.Join(d.path, "members"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]member{}
	for _, de := range des {
		vm, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok {
			continue
		}
		p := filepath.Join(d.path, "members", de.Name())
		m := member{live: fileLocked(p)}
		if b, err := os.ReadFile(p); err == nil {
			_ = json.Unmarshal(b, &m.info)
		}
		m.info.VM = vm
		out[vm] = m
	}
	return out, nil
}

// fileLocked reports whether another open file description holds a lock
// on path.
func fileLocked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// forget removes what VM vm holds in the directory and in the table: its
// forward rules, its leases and its member file.
func (d *lockedDir) forget(nc *nftables.Conn, vm string) error {
	errs := []error{deleteVMRules(nc, vm)}
	if des, err := os.ReadDir(filepath.Join(d.path, "leases")); err == nil {
		for _, de := range des {
			p := filepath.Join(d.path, "leases", de.Name())
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == vm {
				errs = append(errs, removeIfExists(p))
			}
		}
	}
	errs = append(errs, removeIfExists(filepath.Join(d.path, "members", vm+".json")))
	return errors.Join(errs...)
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// pruneDead forgets every member no live vmrun holds, except keep.
func (d *lockedDir) pruneDead(nc *nftables.Conn, keep string, tr *hostnet.Trace) (live map[string]member, err error) {
	ms, err := d.members()
	if err != nil {
		return nil, err
	}
	live = map[string]member{}
	var errs []error
	for vm, m := range ms {
		switch {
		case m.live:
			live[vm] = m
		case vm != keep:
			tr.ReportEvent(fmt.Sprintf("NAT: forgetting VM %s, whose vmrun is gone", vm))
			errs = append(errs, d.forget(nc, vm))
		}
	}
	return live, errors.Join(errs...)
}

// lease returns VM vm's address: the one it already holds, or a new one
// (allocateIP) claimed with an O_EXCL lease file.
func (d *lockedDir) lease(subnet netip.Prefix, vm string) (netip.Addr, error) {
	leases := filepath.Join(d.path, "leases")
	des, err := os.ReadDir(leases)
	if err != nil {
		return netip.Addr{}, err
	}
	held := map[netip.Addr]bool{}
	for _, de := range des {
		a, err := netip.ParseAddr(de.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(leases, de.Name())); err == nil && strings.TrimSpace(string(b)) == vm && subnet.Contains(a) {
			return a, nil
		}
		held[a] = true
	}
	for {
		a, err := allocateIP(subnet, vm, func(a netip.Addr) bool { return held[a] })
		if err != nil {
			return netip.Addr{}, err
		}
		f, err := os.OpenFile(filepath.Join(leases, a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			held[a] = true
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_, werr := f.WriteString(vm + "\n")
		return a, errors.Join(werr, f.Close())
	}
}

// holdMember writes members/VM.json and locks it for the life of this
// process (the lock is what tells other vmruns this VM is alive).
func (d *lockedDir) holdMember(info memberInfo) (*os.File, error) {
	p := filepath.Join(d.path, "members", info.VM+".json")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	b, _ := json.Marshal(info)
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Idle reports whether the NAT network of the calling thread's namespace
// under runtime root root has state but no live VM (what `vmrun gc`
// would remove), and the state's directory. It changes nothing.
func Idle(root string) (dir string, idle bool) {
	dir, err := StateDir(root)
	if err != nil {
		return "", false
	}
	d, err := lockDir(dir, false)
	if err != nil || d == nil {
		return dir, false
	}
	defer d.unlock()
	ms, _ := d.members()
	for _, m := range ms {
		if m.live {
			return dir, false
		}
	}
	return dir, true
}
