// Package guestexec runs commands in a running guest through its QEMU
// guest agent: `vmrun exec` (Run) and a run's one-shot --exec (OneShot).
// It owns the agent channel's sockets in a VM's runtime directory (Listen),
// the lock that serialises exec sessions on one VM, the bounded wait for
// the agent and the diagnosis when it never answers. The exit codes of its
// errors are vmrun's (internal/exitcode); a command's own code is passed
// on with exitcode.Pass.
package guestexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/qga"
)

// The sockets of the agent channel and exec ports in a VM's runtime dir.
const (
	agentSock  = "qga.sock"
	stdoutSock = "exec-out.sock"
	stderrSock = "exec-err.sock"
	execLock   = "exec.lock"
)

// defaultAgentWait bounds the wait for the guest agent when no --timeout
// is given.
const defaultAgentWait = 5 * time.Minute

// ErrAgentNotUp is the cause of every "the guest agent never answered" error.
var ErrAgentNotUp = errors.New("the guest agent never answered")

// ports returns the VM directory's agent and exec sockets.
func ports(dir string) qga.Ports {
	return qga.Ports{
		Agent:  filepath.Join(dir, agentSock),
		Stdout: filepath.Join(dir, stdoutSock),
		Stderr: filepath.Join(dir, stderrSock),
	}
}

// Listen makes the listening sockets of the agent channel and the exec
// ports in the VM's runtime directory. QEMU gets the exec ports'
// listeners as fds, and for the agent's port one end of a socketpair:
// vmrun serves qga.sock itself through it (agentProxy). The Channel it
// returns asks the agent for the guest's addresses (WatchAddresses); its
// Close stops serving and closes the listeners.
func Listen(dir *rundir.Dir) (*launcher.AgentPorts, *Channel, error) {
	var lns []*net.UnixListener
	var proxy *agentProxy
	closeAll := func() error {
		if proxy != nil {
			proxy.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
		return nil
	}
	var files []*os.File
	for _, name := range []string{agentSock, stdoutSock, stderrSock} {
		ln, err := listen(dir, name)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if name == agentSock {
			var qemu *os.File
			if proxy, qemu, err = newAgentProxy(ln); err != nil {
				ln.Close()
				closeAll()
				return nil, nil, err
			}
			files = append(files, qemu)
			continue
		}
		lns = append(lns, ln)
		f, err := ln.File()
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("agent socket %s: %w", name, err)
		}
		files = append(files, f)
	}
	ch := &Channel{proxy: proxy, closeAll: closeAll, kick: make(chan struct{}, 1)}
	proxy.ended = ch.Kick
	proxy.Serve()
	return &launcher.AgentPorts{QGA: files[0], Stdout: files[1], Stderr: files[2]}, ch, nil
}

// listen listens on the socket name in the VM's runtime directory,
// replacing a crashed run's leftover (the caller holds the VM's lock).
func listen(dir *rundir.Dir, name string) (*net.UnixListener, error) {
	sock, err := dir.Socket(name)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stale socket %s: %w", sock, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", sock, err)
	}
	return ln, nil
}

// readStdin returns the whole of r (nil for a nil r: the command gets
// /dev/null).
func readStdin(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, qga.MaxStdin+1))
	if err != nil || len(b) == 0 {
		return nil, nil // empty, closed or unreadable: the command gets /dev/null
	}
	if len(b) > qga.MaxStdin {
		return nil, exitcode.Usagef("%w: the guest agent takes it in one message; share the file with --share instead", qga.ErrStdinTooLarge)
	}
	return b, nil
}

// lockExec serialises exec sessions on one VM: QEMU serves one connection
// per port. The locked file (closing it unlocks) also holds the pids the
// guest agent may still hold for earlier sessions (pendingPIDs).
func lockExec(ctx context.Context, dir, name string, notify func(string, ...any)) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, execLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, exitcode.Setupf("VM %q: exec lock: %w", name, err)
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return f, nil
	}
	notify("waiting for another vmrun exec in VM %q to finish", name)
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, exitcode.Setupf("VM %q: exec lock: %w", name, err)
		}
		return f, nil
	case <-ctx.Done():
		// Closing the file drops the lock request with it.
		f.Close()
		return nil, exitcode.Wrap(exitcode.Timeout, fmt.Errorf("VM %q: gave up waiting for another vmrun exec to finish", name))
	}
}

// pendingPIDs reads the pids of earlier sessions' commands that the guest
// agent may still hold (savePending), one per line, from the exec lock's
// file. Unreadable lines are skipped: at worst the agent keeps an entry.
func pendingPIDs(f *os.File) []int {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 4096))
	if err != nil && len(b) == 0 {
		return nil
	}
	var pids []int
	for _, l := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(l); err == nil && p > 0 {
			pids = append(pids, p)
		}
	}
	return pids
}

// savePending replaces the pids in the exec lock's file (best effort: the
// cost of a lost pid is one entry the agent keeps until the guest stops).
func savePending(f *os.File, pids []int) {
	var b strings.Builder
	for _, p := range pids {
		fmt.Fprintf(&b, "%d\n", p)
	}
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(b.String()), 0)
	}
}

// reportTruncated says which output streams the guest agent cut.
func reportTruncated(notify func(string, ...any), res qga.Result) {
	for _, s := range res.Truncated {
		notify("the command's %s was truncated by the guest agent at its 16 MiB limit (the exec ports could not be used)", s)
	}
}
