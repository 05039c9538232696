package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/guestwait"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// sshDefaultTimeout bounds `vmrun ssh`'s wait for the guest's SSH server.
const sshDefaultTimeout = 2 * time.Minute

// knownHostsFile is the VM's own known_hosts, in its runtime directory:
// the guest's host key is taken at the run's first `vmrun ssh` and held
// to for the rest of the run (a new run, a new key: test and cloud
// images make theirs at first boot).
const knownHostsFile = "known_hosts"

func sshCommand() *cli.Command {
	return &cli.Command{
		Name:  "ssh",
		Usage: "log into a running VM's guest with the system's ssh, or run CMD there, once its SSH server answers",
		UsageText: "vmrun ssh NAME [--timeout DURATION] [-- CMD...]\n\n" +
			"Waits (at most --timeout, default 2m) until port 22 answers on the guest's learnt address, or an SSH server on the host end of " +
			"the forward vmrun adds to its port 22 in user mode (no wait once a login of this run succeeded), then runs ssh as the user " +
			"of the guest's cloud-init seed (named after you) with its key, checking the host key against the VM's own known_hosts (accept-new). " +
			"Exits with ssh's code (255: ssh could not connect or log in); 124 when --timeout passed first; 2 when the VM stopped first; " +
			"1 when no such VM runs or ssh is not installed.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: sshDefaultTimeout, Usage: "give up waiting for the guest's SSH server after `DURATION`"},
		},
		OnUsageError: usageError,
		Action:       sshAction,
	}
}

func sshAction(c *cli.Context) error {
	name, timeout, cmd, err := sshArgs(c)
	if err != nil {
		return err
	}
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return exitcode.Usagef("vmrun ssh runs the system's ssh, which is not installed: install it (Debian: apt-get install openssh-client)")
	}
	root := rundir.Root()
	if ap, st, ok := answeredBefore(root, name); ok {
		return execSSH(bin, sshArgv(filepath.Join(root, name), name, ap, st, cmd))
	}
	w, err := guestwait.New(root, name, true, time.Now().Add(timeout))
	if err != nil {
		return err
	}
	defer w.Close()
	if isTerminal(os.Stderr) {
		// Only when there is a wait to see: an answering guest is quicker.
		t := time.AfterFunc(300*time.Millisecond, func() {
			fmt.Fprintf(c.App.ErrWriter, "vmrun: waiting for %s's SSH server (at most %s)...\n", name, timeout)
		})
		defer t.Stop()
	}
	ap, err := w.WaitPort()
	if errors.Is(err, guestwait.ErrTimeout) {
		return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("VM %q: %w", name, sshMissing(w.State(), timeout)))
	}
	if err != nil {
		return err
	}
	argv := sshArgv(filepath.Join(root, name), name, ap, w.State(), cmd)
	w.Close()
	return execSSH(bin, argv)
}

// execSSH replaces vmrun with ssh: ssh owns the terminal, and its exit
// code is vmrun's.
func execSSH(bin string, argv []string) error {
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
	fi, err := os.Stat(filepath.Join(root, name, knownHostsFile))
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

// sshMissing says what the guest lacked when the wait ran out.
func sshMissing(st *rundir.State, timeout time.Duration) error {
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

// sshArgv is ssh's command line: the seed's user and key when vmrun made
// the seed, the VM's own known_hosts (host key under the VM's name,
// whatever address or port it is reached on), and cmd after --.
func sshArgv(dir, name string, ap netip.AddrPort, st *rundir.State, cmd []string) []string {
	argv := []string{"ssh",
		"-o", "StrictHostKeyChecking=accept-new",
		"-o", "UserKnownHostsFile=" + filepath.Join(dir, knownHostsFile),
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

// sshArgs returns ssh's VM name, --timeout (which may also follow the
// name) and the command after --.
func sshArgs(c *cli.Context) (name string, timeout time.Duration, cmd []string, err error) {
	args := c.Args().Slice()
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", 0, nil, exitcode.Usagef("vmrun ssh takes a VM name (see `vmrun ls`): vmrun ssh NAME [-- CMD...]")
	}
	name, timeout = args[0], c.Duration("timeout")
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
