// Package guestssh is `vmrun ssh` without the CLI: where a running VM's
// SSH server is reached (its learnt address, or user mode's forward to its
// port 22), the wait until it answers, and ssh's command line.
package guestssh

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/guestwait"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// KnownHostsFile is the VM's own known_hosts, in its runtime directory:
// the guest's host key is taken at the run's first `vmrun ssh` and held
// to for the rest of the run (a new run, a new key: test and cloud
// images make theirs at first boot).
const KnownHostsFile = "known_hosts"

// Run is `vmrun ssh` for the VM name under root: it waits for the
// guest's SSH server (saying so on stderr once the wait has lasted 300ms,
// when terminal: stderr is one) and replaces vmrun with the system's ssh.
func Run(root, name string, timeout time.Duration, cmd []string, stderr io.Writer, terminal bool) error {
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return exitcode.Usagef("vmrun ssh runs the system's ssh, which is not installed: install it (Debian: apt-get install openssh-client)")
	}
	var waiting func()
	if terminal {
		waiting = func() {
			fmt.Fprintf(stderr, "vmrun: waiting for %s's SSH server (at most %s)...\n", name, timeout)
		}
	}
	argv, err := Target(root, name, timeout, cmd, waiting)
	if err != nil {
		return err
	}
	return Exec(bin, argv)
}

// Target returns ssh's command line for the VM name under root: at once
// when a login of this run succeeded, else once the guest's SSH server
// answers, waiting at most timeout. waiting, when not nil, is called once
// the wait has lasted 300ms.
func Target(root, name string, timeout time.Duration, cmd []string, waiting func()) ([]string, error) {
	if ap, st, ok := answeredBefore(root, name); ok {
		return Argv(filepath.Join(root, name), name, ap, st, cmd), nil
	}
	w, err := guestwait.New(root, name, true, time.Now().Add(timeout))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if waiting != nil {
		// Only when there is a wait to see: an answering guest is quicker.
		t := time.AfterFunc(300*time.Millisecond, waiting)
		defer t.Stop()
	}
	ap, err := w.WaitPort()
	if errors.Is(err, guestwait.ErrTimeout) {
		return nil, exitcode.Wrap(exitcode.Timeout, fmt.Errorf("VM %q: %w", name, missing(w.State(), timeout)))
	}
	if err != nil {
		return nil, err
	}
	return Argv(filepath.Join(root, name), name, ap, w.State(), cmd), nil
}

// Exec replaces vmrun with ssh: ssh owns the terminal, and its exit code
// is vmrun's.
func Exec(bin string, argv []string) error {
	if err := syscall.Exec(bin, argv, os.Environ()); err != nil {
		return exitcode.Setupf("running %s: %w", bin, err)
	}
	return nil
}

// answeredBefore returns where to reach the guest's SSH server without
// waiting: once a login of this run succeeded, the VM's known_hosts holds
// the guest's host key, and ssh runs at once (no check that would wake the
// guest's SSH server first). ok is false otherwise.
func answeredBefore(root, name string) (netip.AddrPort, *rundir.State, bool) {
	fi, err := os.Stat(filepath.Join(root, name, KnownHostsFile))
	if err != nil || fi.Size() == 0 {
		return netip.AddrPort{}, nil, false
	}
	e, found, err := rundir.Lookup(root, name)
	if err != nil || !found || !e.Live || e.State == nil {
		return netip.AddrPort{}, nil, false
	}
	if s := e.State.SSH; s != nil && s.Forward != "" {
		ap, err := netip.ParseAddrPort(s.Forward)
		return ap, e.State, err == nil
	}
	var as []netip.Addr
	for _, a := range e.State.Addresses {
		if p, err := netip.ParseAddr(a.Addr); err == nil && a.Source != netsetup.SourceUser {
			as = append(as, p)
		}
	}
	a := guestwait.PreferIPv4(as)
	return netip.AddrPortFrom(a, 22), e.State, a.IsValid()
}

// missing says what the guest lacked when the wait ran out.
func missing(st *rundir.State, timeout time.Duration) error {
	switch {
	case st == nil:
		return errors.New("stopped while vmrun ssh waited for it")
	case st.SSH != nil && st.SSH.Forward != "":
		return fmt.Errorf("no SSH server answered on its forward %s within --timeout %s: is sshd installed and running in the guest?", st.SSH.Forward, timeout)
	case len(st.Addresses) == 0:
		return fmt.Errorf("the guest has no address yet after --timeout %s (see its console: vmrun logs NAME)", timeout)
	}
	addrs := make([]string, len(st.Addresses))
	for i, a := range st.Addresses {
		addrs[i] = a.Addr
	}
	return fmt.Errorf("no SSH server answered on port 22 of %s within --timeout %s: is sshd installed and running in the guest?", strings.Join(addrs, ", "), timeout)
}

// Argv is ssh's command line: the seed's user and key when vmrun made
// the seed, the VM's own known_hosts (host key under the VM's name,
// whatever address or port it is reached on), and cmd after --.
func Argv(dir, name string, ap netip.AddrPort, st *rundir.State, cmd []string) []string {
	argv := []string{"ssh",
		"-o", "StrictHostKeyChecking=accept-new",
		"-o", "UserKnownHostsFile=" + filepath.Join(dir, KnownHostsFile),
		"-o", "HostKeyAlias=vmrun-" + name,
		"-o", "LogLevel=ERROR",
	}
	if ap.Port() != 22 {
		argv = append(argv, "-p", strconv.Itoa(int(ap.Port())))
	}
	if st != nil && st.SSH != nil {
		if st.SSH.Key != "" {
			argv = append(argv, "-i", st.SSH.Key)
		}
		if st.SSH.User != "" {
			argv = append(argv, "-l", st.SSH.User)
		}
	}
	argv = append(argv, ap.Addr().String())
	if len(cmd) > 0 {
		argv = append(append(argv, "--"), cmd...)
	}
	return argv
}

// ParseArgs returns `vmrun ssh`'s VM name, --timeout (timeout as parsed
// before the name, which it may also follow) and the command after --.
func ParseArgs(args []string, timeout time.Duration) (name string, _ time.Duration, cmd []string, err error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", 0, nil, exitcode.Usagef("vmrun ssh takes a VM name (see `vmrun ls`): vmrun ssh NAME [-- CMD...]")
	}
	name = args[0]
	rest := args[1:]
	for len(rest) > 0 && rest[0] != "--" && strings.HasPrefix(rest[0], "-") {
		flag, value, hasValue := strings.Cut(strings.TrimLeft(rest[0], "-"), "=")
		if flag != "timeout" {
			return "", 0, nil, exitcode.Usagef("vmrun ssh: unexpected %q: options go before --, the command after it (see `vmrun ssh --help`)", rest[0])
		}
		if !hasValue {
			if len(rest) < 2 {
				return "", 0, nil, exitcode.Usagef("--timeout needs a value")
			}
			rest, value = rest[1:], rest[1]
		}
		if timeout, err = time.ParseDuration(value); err != nil || timeout <= 0 {
			return "", 0, nil, exitcode.Usagef("--timeout %q is not a positive duration; write e.g. 30s or 2m", value)
		}
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	if err := rundir.ValidateName(name); err != nil {
		return "", 0, nil, exitcode.Usagef("%w", err)
	}
	return name, timeout, rest, nil
}

// Forward adds, in user mode with a seed, a forward from a free port on
// 127.0.0.1 to the guest's port 22 (unless plan already has one there)
// and returns its host end, for `vmrun ssh`; "" otherwise.
func Forward(seed bool, plan *netsetup.Plan) (string, error) {
	if !seed || plan.Mode != netsetup.User {
		return "", nil
	}
	for _, f := range plan.Forwards {
		if f.Proto == "tcp" && f.GuestPort == 22 && (f.HostAddr == "" || f.HostAddr == "127.0.0.1") {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.HostPort)), nil
		}
	}
	// A free port now; QEMU (or passt) binds it a moment later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", exitcode.Setupf("a free port for the guest's SSH forward: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	plan.Forwards = append(plan.Forwards, netsetup.Forward{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: port, GuestPort: 22})
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
