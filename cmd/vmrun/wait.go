package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:  "wait",
		Usage: "wait until a running VM's guest has an address (--for address) or answers on TCP port 22 of one (--for ssh), and print that address",
		UsageText: "vmrun wait NAME [--for address|ssh] [--timeout DURATION]\n\n" +
			"Exits 0 with the address on stdout; 124 when --timeout passed first; 2 when the VM stopped first; 1 when no such VM runs.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "for", Value: "address", Usage: "`WHAT` to wait for: address, or ssh"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION` (default: wait as long as the VM runs)"},
		},
		OnUsageError: usageError,
		Action:       waitAction,
	}
}

// sshRetry bounds the pause between two connection attempts to a learnt
// address's SSH port (a new address is tried at once).
const (
	sshRetryFirst = 100 * time.Millisecond
	sshRetryMax   = time.Second
	sshDialWait   = time.Second
)

func waitAction(c *cli.Context) error {
	name, what, timeout, err := waitArgs(c)
	if err != nil {
		return err
	}
	root := rundir.Root()
	ino, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return exitcode.Setupf("inotify: %w", err)
	}
	defer unix.Close(ino)
	// The state file is replaced by a rename; the directory goes when the VM ends.
	if _, err := unix.InotifyAddWatch(ino, filepath.Join(root, name), unix.IN_MOVED_TO|unix.IN_DELETE_SELF); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return exitcode.Usagef("no VM named %q is running (see `vmrun ls`)", name)
		}
		return exitcode.Setupf("watching VM %q: %w", name, err)
	}
	w := &waiter{root: root, name: name, ssh: what == "ssh", ino: ino, pidfd: -1}
	defer w.close()
	if timeout > 0 {
		w.deadline = time.Now().Add(timeout)
	}
	a, err := w.wait()
	if err != nil {
		if errors.Is(err, errWaitTimeout) {
			return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("VM %q: %w after --timeout %s", name, err, timeout))
		}
		return err
	}
	fmt.Fprintln(c.App.Writer, a)
	return nil
}

// errWaitTimeout: the deadline passed.
var errWaitTimeout = errors.New("no answer yet")

// waiter waits on one VM's state: it wakes on the state file's
// replacement (inotify on the VM's runtime directory) and on its vmrun's
// exit (a pidfd), and for ssh on a bounded retry timer.
type waiter struct {
	root, name string
	ssh        bool
	ino, pidfd int
	deadline   time.Time // zero: none
	retry      time.Duration
}

func (w *waiter) close() {
	if w.pidfd >= 0 {
		unix.Close(w.pidfd)
	}
}

// wait returns the address waited for.
func (w *waiter) wait() (netip.Addr, error) {
	for {
		st, err := w.state()
		if err != nil {
			return netip.Addr{}, err
		}
		a, pending, err := w.check(st)
		if err != nil || a.IsValid() {
			return a, err
		}
		if err := w.sleep(pending); err != nil {
			return netip.Addr{}, err
		}
	}
}

// state reads the VM's state, and fails when the VM no longer runs.
func (w *waiter) state() (*rundir.State, error) {
	entries, err := rundir.List(w.root)
	if err != nil {
		return nil, exitcode.Setupf("cannot list %s: %w", w.root, err)
	}
	for _, e := range entries {
		if e.Name != w.name || !e.Live || e.State == nil {
			continue
		}
		if w.pidfd < 0 && e.State.PID > 0 {
			if w.pidfd, err = unix.PidfdOpen(e.State.PID, 0); err != nil {
				w.pidfd = -1
			}
		}
		return e.State, nil
	}
	return nil, exitcode.Setupf("VM %q is not running (any more)", w.name)
}

// check returns the address waited for, if st has it; pending says that
// an ssh connection should be tried again after a pause.
func (w *waiter) check(st *rundir.State) (a netip.Addr, pending bool, err error) {
	var cands []netip.Addr
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
		cands = append(cands, p)
	}
	if !w.ssh {
		return preferIPv4(cands), false, nil
	}
	if len(cands) == 0 && user {
		return netip.Addr{}, false, exitcode.Usagef("VM %q is on --net user: its guest address cannot be reached from the host; forward a port to its port 22 (--forward tcp:2222:22) and connect to that", w.name)
	}
	for _, c := range cands {
		if w.dial(c) {
			return c, false, nil
		}
	}
	return netip.Addr{}, len(cands) > 0, nil
}

// dial tries TCP port 22 of a once, within sshDialWait (and the deadline).
func (w *waiter) dial(a netip.Addr) bool {
	ctx, cancel := context.WithTimeout(context.Background(), sshDialWait)
	defer cancel()
	if !w.deadline.IsZero() {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, w.deadline)
		defer c2()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, 22).String())
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// sleep waits for the next state change, the VM's end, the ssh retry
// (when pending) or the deadline.
func (w *waiter) sleep(pending bool) error {
	timeout := time.Duration(-1)
	if pending {
		w.retry = min(max(2*w.retry, sshRetryFirst), sshRetryMax)
		timeout = w.retry
	}
	if !w.deadline.IsZero() {
		left := time.Until(w.deadline)
		if left <= 0 {
			return errWaitTimeout
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

// preferIPv4 returns the first IPv4 address, else the first one.
func preferIPv4(as []netip.Addr) netip.Addr {
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

// waitArgs returns wait's VM name and options, which may also follow the
// name (`vmrun wait NAME --for ssh`).
func waitArgs(c *cli.Context) (name, what string, timeout time.Duration, err error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		return "", "", 0, exitcode.Usagef("vmrun wait takes one VM name (see `vmrun ls`)")
	}
	name, what, timeout = args[0], c.String("for"), c.Duration("timeout")
	for rest := args[1:]; len(rest) > 0; rest = rest[1:] {
		flag, value, hasValue := strings.Cut(strings.TrimLeft(rest[0], "-"), "=")
		if !strings.HasPrefix(rest[0], "-") || (flag != "for" && flag != "timeout") {
			return "", "", 0, exitcode.Usagef("vmrun wait: unexpected %q: run `vmrun wait --help`", rest[0])
		}
		if !hasValue {
			if len(rest) < 2 {
				return "", "", 0, exitcode.Usagef("--%s needs a value", flag)
			}
			rest, value = rest[1:], rest[1]
		}
		if flag == "for" {
			what = value
		} else if timeout, err = time.ParseDuration(value); err != nil {
			return "", "", 0, exitcode.Usagef("--timeout %q is not a duration; write e.g. 30s or 2m", value)
		}
	}
	if what != "address" && what != "ssh" {
		return "", "", 0, exitcode.Usagef("--for %q: wait for address or ssh", what)
	}
	if err := rundir.ValidateName(name); err != nil {
		return "", "", 0, exitcode.Usagef("%w", err)
	}
	return name, what, timeout, nil
}
