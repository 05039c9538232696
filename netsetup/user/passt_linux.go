package user

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// Attach starts passt, or returns QEMU's slirp when c.Passt is "".
func (c Config) Attach(ctx context.Context, rec hostnet.Recorder) (*hostnet.Attachment, error) {
	if c.Passt == "" {
		reportAddr(ctx, false)
		return Slirp(c.MAC, c.Forwards), nil
	}
	if c.RuntimeRoot == "" {
		return nil, hostnet.Refuse(hostnet.ErrBadRequest, "the user-mode plan has no runtime root for passt")
	}
	att, err := passtAttachment(ctx, c, rec)
	if err == nil {
		reportAddr(ctx, true)
	}
	return att, err
}

// passtReadyWait bounds how long Apply waits for passt to finish its
// set-up (it takes a few milliseconds; a loaded machine may need more).
const passtReadyWait = 20 * time.Second

// passtStopWait is how long passt gets to exit after SIGTERM.
const passtStopWait = 2 * time.Second

// passtAttachment starts passt for user-mode networking and returns the
// attachment QEMU uses: one end of a socketpair, passed to QEMU as
// `-netdev stream,addr.type=fd` (QEMU 7.2), the other end inherited by
// passt as --fd 3. No socket file is involved, so passt's switch to user
// nobody (when started as root, before it creates any socket) needs no
// directory it can write. passt runs in the foreground as vmrun's child,
// is recorded as a process (argv[0] names the VM's runtime directory, which
// is what cleanup matches), and exits by itself when QEMU closes its end.
func passtAttachment(ctx context.Context, c Config, rec hostnet.Recorder) (att *hostnet.Attachment, err error) {
	tr := hostnet.TraceFrom(ctx)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("passt: socketpair: %w", err)
	}
	passtEnd, qemuEnd := os.NewFile(uintptr(fds[0]), "passt"), os.NewFile(uintptr(fds[1]), "qemu")
	defer passtEnd.Close()
	defer func() {
		if err != nil {
			qemuEnd.Close()
		}
	}()

	match := filepath.Join(c.RuntimeRoot, c.VM, "passt")
	cmd := &exec.Cmd{
		Path: c.Passt,
		// passt picks passt or pasta mode from the base name of argv[0].
		Args:        append([]string{match}, passtArgs(c.Forwards)...),
		ExtraFiles:  []*os.File{passtEnd},
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("passt: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("passt (%s) could not be started: %w; use --net nat, or uninstall passt to use QEMU's slirp", c.Passt, err)
	}
	h := &passtProc{cmd: cmd, tail: linetail.New(8), done: make(chan struct{}), trace: tr}
	h.readers.Add(1)
	go h.readStderr(stderr)
	go h.wait()
	obj := hostnet.ProcessObject(cmd.Process.Pid, match)
	if err := rec.Record(obj); err != nil {
		return nil, errors.Join(fmt.Errorf("passt: %w", err), h.stop())
	}
	undo := func() error { return errors.Join(h.stop(), rec.Forget(obj)) }
	if err := h.waitReady(); err != nil {
		return nil, errors.Join(err, undo())
	}
	tr.ReportStep("passt")
	svc := hostnet.NewServices(ctx)
	svc.Go(hostnet.ServicePasst, hostnet.PasstPolicy, h.watch)
	return &hostnet.Attachment{
		Backend:  "stream",
		Files:    []*os.File{qemuEnd},
		MAC:      append(net.HardwareAddr(nil), c.MAC...),
		Undo:     sync.OnceValue(func() error { svc.Stop(); return undo() }),
		Services: svc,
	}, nil
}

// passtProc is a running passt.
type passtProc struct {
	cmd   *exec.Cmd
	tail  *linetail.Tail
	trace *hostnet.Trace

	done     chan struct{} // closed when passt has exited
	state    *os.ProcessState
	stopping sync.Once
	readers  sync.WaitGroup
}

func (h *passtProc) wait() {
	h.readers.Wait() // stderr fully read first: Wait closes the pipe
	_ = h.cmd.Wait()
	h.state = h.cmd.ProcessState
	close(h.done)
}

// readStderr keeps passt's last lines for error messages and passes each
// to the trace's event log.
func (h *passtProc) readStderr(r io.Reader) {
	defer h.readers.Done()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		// Without a syslog socket, passt reports each failed log line.
		if line == "" || strings.HasPrefix(line, "Failed to send") && strings.HasSuffix(line, "to syslog") {
			continue
		}
		h.tail.Add(line)
		h.trace.ReportEvent("passt: " + line)
	}
}

// waitReady waits until passt has finished its set-up — it installs its
// seccomp filter as the last step, after binding the forwarded ports —
// or has exited (a port in use, no usable interface, ...).
func (h *passtProc) waitReady() error {
	status := fmt.Sprintf("/proc/%d/status", h.cmd.Process.Pid)
	deadline := time.Now().Add(passtReadyWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		select {
		case <-h.done:
			return h.exitError("passt could not start")
		default:
		}
		if b, err := os.ReadFile(status); err == nil && seccompFiltered(b) {
			return nil
		}
		if time.Now().After(deadline) {
			h.trace.ReportEvent(fmt.Sprintf("passt did not report ready within %s; going on", passtReadyWait))
			return nil
		}
		time.Sleep(delay)
	}
}

// seccompFiltered reports whether a /proc/PID/status shows a seccomp
// filter (mode 2).
func seccompFiltered(status []byte) bool {
	for _, l := range bytes.Split(status, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("Seccomp:")); ok {
			return string(bytes.TrimSpace(v)) == "2"
		}
	}
	return false
}

// exitError describes passt's exit with its last messages.
func (h *passtProc) exitError(what string) error {
	return fmt.Errorf("%s (%w)", what, h.exitReason())
}

// exitReason is passt's exit status and its last messages.
func (h *passtProc) exitReason() error {
	msg := strings.Join(h.tail.Lines(), "; ")
	if msg == "" {
		msg = "no message"
	}
	return fmt.Errorf("%s: %s", h.state, msg)
}

// watch is passt's service: it returns when passt exits, with an error
// unless passt ended well (status 0: QEMU closed its socket at the end of
// the run), or nil when the attachment's services stop first.
func (h *passtProc) watch(ctx context.Context) error {
	select {
	case <-h.done:
		if h.state.Success() {
			return nil
		}
		return h.exitReason()
	case <-ctx.Done():
		return nil
	}
}

// stop ends passt: SIGTERM, then SIGKILL; it never signals a process that
// has already been reaped (the done channel says so).
func (h *passtProc) stop() error {
	var err error
	h.stopping.Do(func() {
		select {
		case <-h.done:
			return
		default:
		}
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
			return
		case <-time.After(passtStopWait):
		}
		_ = h.cmd.Process.Kill()
		select {
		case <-h.done:
		case <-time.After(hostnet.KillWait):
			err = fmt.Errorf("passt (pid %d) did not exit within %s of SIGKILL", h.cmd.Process.Pid, hostnet.KillWait)
		}
	})
	return err
}
