// Package rundir owns vmrun's runtime directories: one private 0700
// directory per running VM holding its lock, its QMP socket and its state
// file. The state file records every kernel object vmrun is about to create,
// before it is created, so that `vmrun gc` (or the next run of the same VM)
// can remove what a killed vmrun left behind.
//
// A record is appended, as one line of JSON written with one write(2), to
// the state file's journal (state.journal) before the object exists; the
// next write of the state file folds the journal in. Neither waits for the
// disk: once write(2) has returned, the record is in the kernel's page
// cache and every later reader sees it, whenever and however vmrun dies.
// Only a crash of the kernel itself could lose it, and that takes every
// recorded object (links, addresses, routes, neighbour entries, nftables
// tables, sysctl values, processes) with it. Flush makes the state durable
// once per run, after its set-up (see docs/architecture.md, "Crash
// safety").
package rundir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// nameRE is compiled when first used, not at the start of every command.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`) })

// ValidateName checks a VM name: letters, digits, '.', '_' and '-', starting
// with a letter or digit, at most MaxNameLen bytes.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrBadName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %q is %d characters long; use at most %d", ErrBadName, name, len(name), MaxNameLen)
	case !nameRE().MatchString(name):
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
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	QEMUPID int    `json:"qemu_pid,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Parent  string `json:"parent,omitempty"`
	// Uplink is the host interface the current attachment was decided
	// for ("" for none, or when unknown).
	Uplink string `json:"uplink,omitempty"`
	MAC    string `json:"mac,omitempty"`
	// Switches counts the times the running guest was moved to another
	// attachment (Mode, Parent and MAC are the current one's).
	Switches int       `json:"switches,omitempty"`
	Started  time.Time `json:"started"`
	// Netns names the network namespace vmrun ran in (netsetup.Netns:
	// "c" and its cookie), where the Objects without a Netns of their own
	// live; NetnsInode is its nsfs inode (net:[INODE]), to find it again.
	// gc undoes them only from there. Empty in the records of older
	// versions, and when the kernel would not say.
	Netns      string   `json:"netns,omitempty"`
	NetnsInode uint64   `json:"netns_inode,omitempty"`
	Objects    []Object `json:"objects,omitempty"`
	QMPSocket  string   `json:"qmp_socket,omitempty"`
	// Addresses are the guest's addresses vmrun learnt, in the order it
	// learnt them (see Dir.SetAddress).
	Addresses []Address `json:"addresses,omitempty"`
	// SSH says how `vmrun ssh` logs into the guest; nil when vmrun gave
	// the guest no cloud-init seed.
	SSH *SSH `json:"ssh,omitempty"`
}

// SSH is how to log into a guest vmrun gave a cloud-init seed.
type SSH struct {
	// User is the account the seed creates; "" for a seed directory the
	// user made (--cloud-init DIR).
	User string `json:"user"`
	// Key is the private key of one of the seed's public keys; "" when
	// none is known (ssh then uses its own defaults and agent).
	Key string `json:"key,omitempty"`
	// Forward is the host's end (127.0.0.1:PORT) of the forward vmrun
	// adds to the guest's port 22 in user mode; "" in the other modes.
	Forward string `json:"forward,omitempty"`
}

// Address is an address the guest was seen to take: information for
// `vmrun ls` and `vmrun wait`, not something to undo.
type Address struct {
	Addr string `json:"addr"`
	// Source names the evidence: "dhcp", "arp", "ndp", "traffic",
	// "static" (--guest-ip), "user" (user mode's address, not on the LAN),
	// "agent" (the guest's QEMU guest agent reported it).
	Source string `json:"source"`
	// Server is the DHCP server that granted it; "" when none or unknown.
	Server string    `json:"server,omitempty"`
	Learnt time.Time `json:"learnt"`
}

// Dir is one VM's runtime directory, locked by the running vmrun.
type Dir struct {
	Path string
	lock *os.File

	mu      sync.Mutex
	state   State
	journal *os.File // open for appending records; nil until the first
	size    int64    // the journal's length: a failed append is cut off here
}

// The files of a VM's state: the state file, written whole (temporary
// file + rename), and the journal of records appended since.
const (
	stateFile   = "state.json"
	journalFile = "state.journal"
)

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
		// them (and cleared them with Update), so a second crash loses
		// nothing; and where they live, so that gc still knows.
		stale = st
		d.state.Objects = append([]Object(nil), st.Objects...)
		d.state.Netns, d.state.NetnsInode = st.Netns, st.NetnsInode
	} else if !errors.Is(err, os.ErrNotExist) {
		// A state file we cannot read: keep it aside so nothing is lost.
		_ = os.Rename(filepath.Join(path, stateFile), filepath.Join(path, stateFile+".bad"))
	}
	return d, stale, nil
}

// ReadState reads the state of the VM directory dir: its state file, and
// the objects recorded in its journal since the state file was written.
// It returns an error satisfying errors.Is(err, os.ErrNotExist) when
// neither exists.
func ReadState(dir string) (*State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("state file %s: %w", filepath.Join(dir, stateFile), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	j, jerr := os.ReadFile(filepath.Join(dir, journalFile))
	if jerr != nil && !errors.Is(jerr, os.ErrNotExist) {
		return nil, jerr
	}
	if err != nil && jerr != nil {
		return nil, err
	}
	st.Objects = mergeJournal(st.Objects, j)
	return &st, nil
}

// mergeJournal appends to objs the objects recorded in journal, one JSON
// line each, that objs does not hold already (a state file written just
// before vmrun died may already hold the journal's records). A line that
// does not parse is one a killed vmrun did not finish writing: its object
// was not created, since Record had not returned.
func mergeJournal(objs []Object, journal []byte) []Object {
	for len(journal) > 0 {
		line := journal
		if i := bytes.IndexByte(journal, '\n'); i >= 0 {
			line, journal = journal[:i], journal[i+1:]
		} else {
			journal = nil
		}
		var o Object
		if len(line) == 0 || json.Unmarshal(line, &o) != nil {
			continue
		}
		if !slices.ContainsFunc(objs, func(x Object) bool { return sameObject(x, o) }) {
			objs = append(objs, o)
		}
	}
	return objs
}

// sameObject reports whether a and b record the same host object.
func sameObject(a, b Object) bool { return a.Kind == b.Kind && a.Name == b.Name && a.Netns == b.Netns }

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
// (without waiting for the disk).
func (d *Dir) Update(f func(*State)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&d.state)
	return d.writeLocked()
}

// Flush waits for the disk to hold the state file as last written, and
// the directory entry naming it. A run needs it once, after its set-up:
// records are written without syncing (see the package's doc), which a
// killed vmrun cannot lose; Flush keeps the file on disk consistent should
// the machine itself go down. It takes no lock and creates nothing, so it
// can run beside the run's later writes, and beside Remove: a file already
// gone needs nothing.
func (d *Dir) Flush() error {
	f, err := os.Open(filepath.Join(d.Path, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("state file: sync: %w", err)
	}
	if err := syncDir(d.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// State returns a copy of the current state.
func (d *Dir) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state
	st.Objects = append([]Object(nil), d.state.Objects...)
	st.Addresses = append([]Address(nil), d.state.Addresses...)
	return st
}

// SetAddress records that the guest took a (learnt keeps the time it
// was first seen; a DHCP server's word replaces weaker evidence; the guest
// agent's word adds addresses but keeps another source's), or,
// with drop, that it gave a.Addr up. It writes the state file only when
// something changed, and without an fsync: the addresses are information,
// not what a crash must not lose. changed says whether it wrote.
func (d *Dir) SetAddress(a Address, drop bool) (changed bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	addrs := d.state.Addresses
	i := slices.IndexFunc(addrs, func(b Address) bool { return b.Addr == a.Addr })
	switch {
	case drop && i < 0:
		return false, nil
	case drop:
		d.state.Addresses = slices.Delete(slices.Clone(addrs), i, i+1)
	case i < 0:
		d.state.Addresses = append(addrs, a)
	case addrs[i].Source == a.Source && addrs[i].Server == a.Server,
		a.Source != "dhcp" && addrs[i].Source == "dhcp",
		a.Source == "agent": // the guest's confirmation keeps how it got it
		return false, nil
	default:
		a.Learnt = addrs[i].Learnt
		d.state.Addresses = slices.Clone(addrs)
		d.state.Addresses[i] = a
	}
	return true, d.writeLocked()
}

// Record appends obj to the state file, atomically, without waiting for
// the disk. Call it before creating the object: after a crash, the record
// is what gc undoes. When it returns, every process that reads the file
// sees the record, also after vmrun was killed (see the package's doc).
func (d *Dir) Record(obj Object) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	line, err := json.Marshal(&obj)
	if err != nil {
		return err
	}
	if err := d.appendLocked(append(line, '\n')); err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	d.state.Objects = append(d.state.Objects, obj)
	return nil
}

// appendLocked appends line to the journal with one write, opening it
// first if needed; a write that fails is cut off again, so that the next
// record starts on a line of its own.
func (d *Dir) appendLocked(line []byte) error {
	if d.journal == nil {
		f, err := os.OpenFile(filepath.Join(d.Path, journalFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		d.journal, d.size = f, fi.Size()
		if d.size > 0 {
			// A killed vmrun's journal may end inside a line.
			line = append([]byte{'\n'}, line...)
		}
	}
	n, err := d.journal.Write(line)
	if err != nil {
		return errors.Join(err, d.journal.Truncate(d.size))
	}
	d.size += int64(n)
	return nil
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

// writeLocked writes the state file atomically (temporary file + rename),
// without waiting for the disk (see Flush).
func (d *Dir) writeLocked() error {
	b, err := json.MarshalIndent(&d.state, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.Path, "."+stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("state file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Path, stateFile)); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	// The state file holds every record now: the journal starts again.
	return d.dropJournalLocked()
}

// dropJournalLocked removes the journal, whose records the state file
// holds. Should vmrun die before, readers find each record in both, once.
func (d *Dir) dropJournalLocked() error {
	if d.journal == nil {
		if _, err := os.Lstat(filepath.Join(d.Path, journalFile)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	} else {
		d.journal.Close()
		d.journal, d.size = nil, 0
	}
	if err := os.Remove(filepath.Join(d.Path, journalFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state journal: %w", err)
	}
	return nil
}

// syncDir fsyncs directory path, making a rename inside it durable.
func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state file: sync %s: %w", path, err)
	}
	return nil
}

// Close releases the lock and keeps the directory: for a VM whose
// leftovers could not all be removed, so that `vmrun gc` can try again.
func (d *Dir) Close() error {
	d.closeJournal()
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// closeJournal closes the journal's file, keeping the file.
func (d *Dir) closeJournal() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.journal != nil {
		d.journal.Close()
		d.journal, d.size = nil, 0
	}
}

// Remove deletes the directory and releases the lock. Call it last, after
// every recorded object has been undone.
func (d *Dir) Remove() error {
	d.closeJournal()
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
		out = append(out, entry(root, de.Name()))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Lookup returns the entry of the VM name under root, as List would, and
// whether its runtime directory exists; it reads only that directory. The
// error is List's: the root exists but cannot be read as a directory.
func Lookup(root, name string) (Entry, bool, error) {
	ok, err := exists(root, name)
	if !ok {
		return Entry{}, false, err
	}
	return entry(root, name), true, nil
}

// Live returns the runtime directory of the VM name under root and whether
// its vmrun runs (holds the lock), with Lookup's error; unlike Lookup it
// does not read the VM's state (`vmrun exec` needs only the directory).
func Live(root, name string) (string, bool, error) {
	ok, err := exists(root, name)
	if !ok {
		return "", false, err
	}
	p := filepath.Join(root, name)
	return p, locked(p), nil
}

// exists says whether name is a VM's runtime directory under root; the
// error is List's.
func exists(root, name string) (bool, error) {
	fi, err := os.Stat(root)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s: not a directory", root)
	}
	if err != nil {
		return false, err
	}
	if ValidateName(name) != nil {
		return false, nil
	}
	if fi, err := os.Stat(filepath.Join(root, name)); err != nil || !fi.IsDir() {
		return false, nil
	}
	return true, nil
}

// entry reads the runtime directory of name under root: whether its vmrun
// holds the lock, and its state (nil while none was written).
func entry(root, name string) Entry {
	p := filepath.Join(root, name)
	e := Entry{Name: name, Path: p, Live: locked(p)}
	e.State, e.Err = ReadState(p)
	if errors.Is(e.Err, os.ErrNotExist) {
		e.Err = nil
	}
	return e
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

// SharedLock runs fn holding an exclusive flock of the runtime root
// directory itself (no file is made for it): it serializes the VMs under
// one root that set up, or undo, an object they share with their look at
// each other's records (LiveRecorded).
func (d *Dir) SharedLock(fn func() error) error {
	f, err := os.Open(filepath.Dir(d.Path))
	if err != nil {
		return err
	}
	defer f.Close() // releases the lock
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock of %s: %w", f.Name(), err)
	}
	return fn()
}

// ForgetNow is Forget, and writes the state file at once: for an object
// other VMs look for in this one's records (LiveRecorded).
func (d *Dir) ForgetNow(obj Object) error {
	if err := d.Forget(obj); err != nil {
		return err
	}
	return d.Update(func(*State) {})
}

// LiveRecorded reports whether a live VM under root has a record that
// match accepts (match tells the caller's own records apart: a dead VM,
// which gc undoes, is not live).
func LiveRecorded(root string, match func(Object) bool) bool {
	entries, err := List(root)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.Live || e.State == nil {
			continue
		}
		if slices.ContainsFunc(e.State.Objects, match) {
			return true
		}
	}
	return false
}
