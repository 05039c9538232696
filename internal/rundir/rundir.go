// Package rundir owns vmrun's runtime directories: one private 0700
// directory per running VM holding its lock, its QMP socket and its state
// file. The state file records every kernel object vmrun is about to create,
// before it is created, so that `vmrun gc` (or the next run of the same VM)
// can remove what a killed vmrun left behind.
package rundir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// EnvRoot names the environment variable that overrides the runtime root.
const EnvRoot = "VMRUN_RUNTIME_DIR"

// MaxNameLen is the longest VM name accepted: short enough for the QMP socket
// path to stay under the 108-byte limit of a unix socket address under the
// usual runtime roots.
const MaxNameLen = 40

// Errors returned by this package.
var (
	// ErrBusy means a live vmrun holds the VM's lock.
	ErrBusy = errors.New("a VM with this name is already running")
	// ErrBadName means the VM name is not acceptable.
	ErrBadName = errors.New("invalid VM name")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateName checks a VM name: letters, digits, '.', '_' and '-', starting
// with a letter or digit, at most MaxNameLen bytes.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrBadName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %q is %d characters long; use at most %d", ErrBadName, name, len(name), MaxNameLen)
	case !nameRE.MatchString(name):
		return fmt.Errorf("%w: %q may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit", ErrBadName, name)
	}
	return nil
}

// Root returns the runtime root: $VMRUN_RUNTIME_DIR if set; /run/vmrun for
// root; $XDG_RUNTIME_DIR/vmrun otherwise; /tmp/vmrun-UID as a last resort.
func Root() string {
	if d := os.Getenv(EnvRoot); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/vmrun"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "vmrun")
	}
	return filepath.Join(os.TempDir(), "vmrun-"+strconv.Itoa(os.Geteuid()))
}

// Object is one thing vmrun created (or changed) on the host, recorded before
// the change so that it can be undone after a crash.
type Object struct {
	// Kind says what it is: "link", "sysctl", "nft-table", "route", "neigh",
	// "addr", "netns", "process".
	Kind string `json:"kind"`
	// Name identifies it: link name, sysctl path, table name, pid, ...
	Name string `json:"name"`
	// Netns is the path of the network namespace it lives in; empty for
	// vmrun's own namespace.
	Netns string `json:"netns,omitempty"`
	// Old is the value to restore (sysctls).
	Old string `json:"old,omitempty"`
	// Detail carries kind-specific data (link kind, route destination, ...).
	Detail map[string]string `json:"detail,omitempty"`
}

// State is the content of a VM's state file.
type State struct {
	Name      string    `json:"name"`
	PID       int       `json:"pid"`
	QEMUPID   int       `json:"qemu_pid,omitempty"`
	Mode      string    `json:"mode,omitempty"`
	Parent    string    `json:"parent,omitempty"`
	MAC       string    `json:"mac,omitempty"`
	Started   time.Time `json:"started"`
	Objects   []Object  `json:"objects,omitempty"`
	QMPSocket string    `json:"qmp_socket,omitempty"`
}

// Dir is one VM's runtime directory, locked by the running vmrun.
type Dir struct {
	Path string
	lock *os.File

	mu    sync.Mutex
	state State
}

// Create makes (or takes over) the runtime directory of VM name under root
// and locks it. It returns ErrBusy if a live vmrun holds the lock. If a
// previous run crashed, the returned stale state is non-nil: the caller must
// undo its objects (see netsetup/gc.Undo) before creating anything.
func Create(root, name string) (d *Dir, stale *State, err error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, nil, fmt.Errorf("runtime root %s: %w", root, err)
	}
	path := filepath.Join(root, name)
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, nil, fmt.Errorf("runtime directory %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		return nil, nil, fmt.Errorf("runtime directory %s: %w", path, err)
	}
	lk, err := os.OpenFile(filepath.Join(path, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("runtime directory %s: %w", path, err)
	}
	if err := lockFile(lk); err != nil {
		lk.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, ErrBusy
		}
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	d = &Dir{Path: path, lock: lk}
	if st, err := ReadState(path); err == nil {
		// Keep the stale objects in the state until the caller has undone
		// them (and cleared them with Update), so a second crash loses nothing.
		stale = st
		d.state.Objects = append([]Object(nil), st.Objects...)
	} else if !errors.Is(err, os.ErrNotExist) {
		// A state file we cannot read: keep it aside so nothing is lost.
		_ = os.Rename(filepath.Join(path, "state.json"), filepath.Join(path, "state.json.bad"))
	}
	return d, stale, nil
}

// ReadState reads the state file of the VM directory dir.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", filepath.Join(dir, "state.json"), err)
	}
	return &st, nil
}

// Socket returns the path of a unix socket named base inside the directory,
// or an error if it would exceed the 108-byte limit of a socket address.
func (d *Dir) Socket(base string) (string, error) {
	p := filepath.Join(d.Path, base)
	if len(p) >= 108 {
		return "", fmt.Errorf("socket path %s is %d bytes, over the 107-byte limit of unix sockets; set %s to a shorter directory or use a shorter --name", p, len(p), EnvRoot)
	}
	return p, nil
}

// Update changes the state under the lock and writes it to disk atomically
// (without waiting for the disk: only Record must be durable).
func (d *Dir) Update(f func(*State)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&d.state)
	return d.writeLocked(false)
}

// State returns a copy of the current state.
func (d *Dir) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state
	st.Objects = append([]Object(nil), d.state.Objects...)
	return st
}

// Record appends obj to the state file and syncs it to disk. Call it before
// creating the object: after a crash, the record is what gc undoes.
func (d *Dir) Record(obj Object) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state.Objects = append(d.state.Objects, obj)
	return d.writeLocked(true)
}

// Forget removes the last recorded object equal in kind, name and netns to
// obj, after it was undone. It changes only the state in memory; the file
// catches up with the next write. Should vmrun die first, gc undoes the
// object again and finds it already gone (every undo is idempotent), so
// tearing down costs no disk writes.
func (d *Dir) Forget(obj Object) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	objs := d.state.Objects
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		if o.Kind == obj.Kind && o.Name == obj.Name && o.Netns == obj.Netns {
			d.state.Objects = append(objs[:i:i], objs[i+1:]...)
			return nil
		}
	}
	return nil
}

// writeLocked writes the state file atomically (temporary file + rename);
// durable also fsyncs the file before the rename.
func (d *Dir) writeLocked(durable bool) error {
	b, err := json.MarshalIndent(&d.state, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.Path, ".state.json.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("state file: %w", err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("state file: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Path, "state.json")); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// Close releases the lock and keeps the directory: for a VM whose
// leftovers could not all be removed, so that `vmrun gc` can try again.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// Remove deletes the directory and releases the lock. Call it last, after
// every recorded object has been undone.
func (d *Dir) Remove() error {
	err := os.RemoveAll(d.Path)
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
	return err
}

// Entry is one VM directory found under the root.
type Entry struct {
	Name  string
	Path  string
	Live  bool // a vmrun holds its lock
	State *State
	Err   error // the state could not be read
}

// List returns the VM directories under root, sorted by name. It never
// changes anything.
func List(root string) ([]Entry, error) {
	des, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if !de.IsDir() || ValidateName(de.Name()) != nil {
			continue
		}
		p := filepath.Join(root, de.Name())
		e := Entry{Name: de.Name(), Path: p, Live: locked(p)}
		e.State, e.Err = ReadState(p)
		if errors.Is(e.Err, os.ErrNotExist) {
			e.Err = nil
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// The VM's lock is an open file description lock (fcntl F_OFD_SETLK) on
// its whole lock file: owned by the open file, like flock, so it is held
// until the running vmrun closes the file or dies; and, unlike flock, it
// can be tested without being taken (F_OFD_GETLK). Readers (`vmrun ls`,
// doctor, gc looking around) therefore never hold it, not even for a
// moment, and a VM starting while they look cannot fail as if it were
// already running.

// lockFile takes the exclusive lock of f without waiting: EAGAIN (or
// EACCES, or EWOULDBLOCK) when another open file description holds it.
// It also takes the flock that vmrun used as its lock before, so that a
// VM started by an older vmrun, which holds only that, is never taken
// over by this one's gc (and an older gc sees this VM as running). Only
// an older vmrun's readers take that flock; this one's never do.
func lockFile(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return err
			}
			break
		}
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// locked reports whether a live process holds the lock of the VM
// directory. It only tests the lock, and never takes it.
func locked(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}
