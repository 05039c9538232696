// Package vmctl acts on a running VM, by name, from another process:
// finds its runtime directory (`vmrun exec`, console, logs), prints its
// console log or its last run's (`vmrun logs`), lists the VMs (`vmrun
// ls`) and stops one (`vmrun stop`). Its errors carry vmrun's exit codes.
package vmctl

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// LiveDir returns the runtime directory of the running VM name under the
// runtime root root.
func LiveDir(root, name string) (string, error) {
	if err := rundir.ValidateName(name); err != nil {
		return "", exitcode.Usagef("%w", err)
	}
	dir, live, err := rundir.Live(root, name)
	if err != nil {
		return "", exitcode.Setupf("cannot list %s: %w", root, err)
	}
	if live {
		return dir, nil
	}
	return "", exitcode.Usagef("no VM named %q is running (see `vmrun ls`)", name)
}

// Stop signals the vmrun of the running VM name to power it off (SIGTERM),
// or with force to stop QEMU at once (SIGQUIT), and waits until that vmrun
// is gone, at most wait when it is positive.
func Stop(root, name string, force bool, wait time.Duration) error {
	if err := rundir.ValidateName(name); err != nil {
		return exitcode.Usagef("%w", err)
	}
	e, ok, err := rundir.Lookup(root, name)
	if err != nil {
		return exitcode.Setupf("cannot list %s: %w", root, err)
	}
	if ok && !e.Live {
		return exitcode.Usagef("VM %q is not running (its vmrun was killed): `vmrun gc` removes what it left", name)
	}
	st := e.State
	if !ok || st == nil || st.PID <= 0 {
		return exitcode.Usagef("no VM named %q is running (see `vmrun ls`)", name)
	}
	// A pidfd names this very process, even if its pid were reused, and
	// becomes readable when it exits: no polling.
	pidfd, err := unix.PidfdOpen(st.PID, 0)
	if err != nil {
		return exitcode.Setupf("VM %q (vmrun pid %d): %w", name, st.PID, err)
	}
	defer unix.Close(pidfd)
	// SIGTERM: power the guest off gracefully. SIGQUIT: stop QEMU at once.
	sig := unix.Signal(syscall.SIGTERM)
	if force {
		sig = unix.SIGQUIT
	}
	if err := unix.PidfdSendSignal(pidfd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.EPERM) {
			return exitcode.Setupf("VM %q belongs to another user (vmrun pid %d): stop it as that user or as root", name, st.PID)
		}
		return exitcode.Setupf("VM %q (vmrun pid %d): %w", name, st.PID, err)
	}
	return waitGone(pidfd, name, wait)
}

// waitGone waits until the process of pidfd exits, at most wait when it
// is positive.
func waitGone(pidfd int, name string, wait time.Duration) error {
	timeout := -1
	if wait > 0 {
		timeout = int(wait.Milliseconds())
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return exitcode.Setupf("waiting for VM %q: %w", name, err)
		}
		if n == 0 {
			return exitcode.Setupf("VM %q is still stopping after %s; wait longer, or use --force", name, wait)
		}
		return nil
	}
}
