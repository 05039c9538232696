// Package guestwait waits until a running VM's guest has an address, or
// answers on TCP port 22 of one, reading the VM's runtime state (`vmrun
// wait`, --wait-address).
package guestwait

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// sshRetry bounds the pause between two connection attempts to a learnt
// address's SSH port (a new address is tried at once).
const (
	sshRetryFirst = 100 * time.Millisecond
	sshRetryMax   = time.Second
	sshDialWait   = time.Second
)

// New watches VM name under the runtime root root; ssh waits for an
// address that answers on port 22, and a non-zero deadline bounds Wait.
// No such VM is a usage error.
func New(root, name string, ssh bool, deadline time.Time) (*Waiter, error) {
	ino, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, exitcode.Setupf("inotify: %w", err)
	}
	// The state file is replaced by a rename; the directory goes when the VM ends.
	if _, err := unix.InotifyAddWatch(ino, filepath.Join(root, name), unix.IN_MOVED_TO|unix.IN_DELETE_SELF); err != nil {
		unix.Close(ino)
		if errors.Is(err, unix.ENOENT) {
			return nil, exitcode.Usagef("no VM named %q is running (see `vmrun ls`)", name)
		}
		return nil, exitcode.Setupf("watching VM %q: %w", name, err)
	}
	return &Waiter{root: root, name: name, ssh: ssh, ino: ino, pidfd: -1, deadline: deadline}, nil
}

// ErrTimeout: the deadline passed before the address was there.
var ErrTimeout = errors.New("no answer yet")

// Waiter waits on one VM's state: it wakes on the state file's
// replacement (inotify on the VM's runtime directory) and on its vmrun's
// exit (a pidfd), and for ssh on a bounded retry timer.
type Waiter struct {
	root, name string
	ssh        bool
	ino, pidfd int
	deadline   time.Time // zero: none
	retry      time.Duration
}

// Close releases the VM's pidfd and the inotify descriptor.
func (w *Waiter) Close() {
	if w.pidfd >= 0 {
		unix.Close(w.pidfd)
	}
	unix.Close(w.ino)
}

// Wait returns the address waited for: ErrTimeout when the deadline
// passed first; an exitcode.Setup error when the VM stopped first.
func (w *Waiter) Wait() (netip.Addr, error) {
	ap, err := w.WaitPort()
	return ap.Addr(), err
}

// WaitPort is Wait with the port: 22 on the guest's address, or the host
// end of user mode's SSH forward (the state's SSH.Forward) when ssh is
// waited for on a user-mode guest vmrun gave a cloud-init seed.
func (w *Waiter) WaitPort() (netip.AddrPort, error) {
	for {
		st, err := w.state()
		if err != nil {
			return netip.AddrPort{}, err
		}
		a, pending, err := w.check(st)
		if err != nil || a.IsValid() {
			return a, err
		}
		if err := w.sleep(pending); err != nil {
			return netip.AddrPort{}, err
		}
	}
}

// State is the VM's state as last read (for an error that says what was
// missing); nil when the VM no longer runs.
func (w *Waiter) State() *rundir.State {
	st, err := w.state()
	if err != nil {
		return nil
	}
	return st
}

// state reads the VM's state, and fails when the VM no longer runs.
func (w *Waiter) state() (*rundir.State, error) {
	e, ok, err := rundir.Lookup(w.root, w.name)
	if err != nil {
		return nil, exitcode.Setupf("cannot list %s: %w", w.root, err)
	}
	if !ok || !e.Live || e.State == nil {
		return nil, exitcode.Setupf("VM %q is not running (any more)", w.name)
	}
	if w.pidfd < 0 && e.State.PID > 0 {
		if w.pidfd, err = unix.PidfdOpen(e.State.PID, 0); err != nil {
			w.pidfd = -1
		}
	}
	return e.State, nil
}

// check returns the address waited for, if st has it; pending says that
// an ssh connection should be tried again after a pause.
func (w *Waiter) check(st *rundir.State) (a netip.AddrPort, pending bool, err error) {
	var cands []netip.AddrPort
	user := false
	for _, ad := range st.Addresses {
		p, perr := netip.ParseAddr(ad.Addr)
		if perr != nil {
			continue
		}
		if ad.Source == netsetup.SourceUser {
			user = true
			if w.ssh {
				continue // not reachable from the host
			}
		}
		cands = append(cands, netip.AddrPortFrom(p, 22))
	}
	if !w.ssh {
		var as []netip.Addr
		for _, c := range cands {
			as = append(as, c.Addr())
		}
		if a := PreferIPv4(as); a.IsValid() {
			return netip.AddrPortFrom(a, 22), false, nil
		}
		return netip.AddrPort{}, false, nil
	}
	banner := false
	if st.SSH != nil && st.SSH.Forward != "" {
		fwd, perr := netip.ParseAddrPort(st.SSH.Forward)
		if perr == nil {
			cands, banner = []netip.AddrPort{fwd}, true
		}
	} else if len(cands) == 0 && user {
		return netip.AddrPort{}, false, exitcode.Usagef("VM %q is on --net user: its guest address cannot be reached from the host; forward a port to its port 22 (--forward tcp:2222:22) and connect to that, or start it with --cloud-init on (or --ssh-key) for vmrun's own forward", w.name)
	}
	for _, c := range cands {
		if w.dial(c, banner) {
			return c, false, nil
		}
	}
	return netip.AddrPort{}, len(cands) > 0, nil
}

// dial connects to a once, within sshDialWait (and the deadline), and
// reports whether something listens there: the guest's kernel answering
// the connection is enough on its own address (no SSH server process is
// woken), but a forward's host end accepts before the guest does, so there
// (banner) an SSH server must answer an identification string with its own.
func (w *Waiter) dial(a netip.AddrPort, banner bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), sshDialWait)
	defer cancel()
	if !w.deadline.IsZero() {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, w.deadline)
		defer c2()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", a.String())
	if err != nil {
		return false
	}
	defer conn.Close()
	if !banner {
		return true
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	// Speak first, as ssh does: passt completes the guest side of a
	// forwarded connection only once the client has sent something.
	if _, err := io.WriteString(conn, "SSH-2.0-vmrun_wait\r\n"); err != nil {
		return false
	}
	id := make([]byte, 4)
	_, err = io.ReadFull(conn, id)
	return err == nil && string(id) == "SSH-"
}

// sleep waits for the next state change, the VM's end, the ssh retry
// (when pending) or the deadline.
func (w *Waiter) sleep(pending bool) error {
	timeout := time.Duration(-1)
	if pending {
		w.retry = min(max(2*w.retry, sshRetryFirst), sshRetryMax)
		timeout = w.retry
	}
	if !w.deadline.IsZero() {
		left := time.Until(w.deadline)
		if left <= 0 {
			return ErrTimeout
		}
		if timeout < 0 || left < timeout {
			timeout = left
		}
	}
	fds := []unix.PollFd{{Fd: int32(w.ino), Events: unix.POLLIN}}
	if w.pidfd >= 0 {
		fds = append(fds, unix.PollFd{Fd: int32(w.pidfd), Events: unix.POLLIN})
	}
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	for {
		_, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return exitcode.Setupf("waiting for VM %q: %w", w.name, err)
		}
		break
	}
	buf := make([]byte, 4096)
	for { // drain the events: the state is read again anyway
		if n, err := unix.Read(w.ino, buf); n <= 0 || err != nil {
			break
		}
	}
	return nil
}

// PreferIPv4 returns the first IPv4 address, else the first one.
func PreferIPv4(as []netip.Addr) netip.Addr {
	for _, a := range as {
		if a.Is4() {
			return a
		}
	}
	if len(as) > 0 {
		return as[0]
	}
	return netip.Addr{}
}
