package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/internal/privdrop"
	"github.com/vmrun/vmrun/qmp"
)

// Options control how Run supervises QEMU.
type Options struct {
	// QMPPath is the path of the socket whose listener is VM.QMP.
	QMPPath string
	// QMPTimeout bounds QEMU's start-up up to a completed QMP handshake.
	QMPTimeout time.Duration
	// Timeout stops the VM (exit code 124) after this long; 0 means never.
	Timeout time.Duration
	// Grace is how long the guest gets to power off after the ACPI button
	// before QEMU is told to quit.
	Grace time.Duration
	// Console receives the guest's serial output (nil discards it).
	Console io.Writer
	// Input, when non-nil, is copied to the guest's serial port.
	Input io.Reader
	// Stderr receives QEMU's own messages (nil: os.Stderr).
	Stderr io.Writer
	// Stop delivers stop requests (signals): the first powers the guest
	// off gracefully, the second forces QEMU to quit at once; SIGQUIT
	// forces at once. (Two signals sent back to back may merge into one in
	// the kernel: whoever must force uses SIGQUIT.)
	Stop <-chan os.Signal
	// Notify prints a one-line notice to the user (nil: discard).
	Notify func(format string, args ...any)
	// Step prints a --verbose progress line: a NIC swap's steps (nil: none).
	Step func(format string, args ...any)
	// Started is called with QEMU's pid right after it started.
	Started func(pid int)
	// Ready is called once the QMP handshake is done: QEMU answers QMP,
	// PlugNIC's NIC is not plugged in yet and the guest does not run yet
	// (Running says when it does).
	Ready func(version string)
	// Plugged, when set, is called with how long PlugNIC's plug took.
	Plugged func(took time.Duration)
	// Running is called once QEMU has acknowledged the resume: the guest
	// runs, and QEMU ending from now on is QEMU dying, not failing to start.
	Running func()
	// Event, when set, sees every QMP event (called from the supervisor).
	Event func(qmp.Event)
	// Exec, when set, runs in its own goroutine once the guest runs (vmrun
	// --exec). When it returns, the guest is powered off and Run's code is
	// the code Exec returned (or its error's exit code) — unless the guest
	// panicked first, or --timeout expired while Exec was not done. Its
	// context ends when QEMU exits.
	Exec func(ctx context.Context) (code int, err error)
	// RunAs, when set, is the user QEMU runs as (vmrun runs as root): QEMU
	// starts with that uid, gid and groups, no capabilities in any set
	// (bounding and ambient included) and no_new_privs. nil: vmrun's own
	// user.
	RunAs *privdrop.User
	// NoNewPrivs sets no_new_privs for QEMU also without RunAs.
	NoNewPrivs bool
	// Lost, when it closes, says the guest's network attachment can no
	// longer serve it: the VM is stopped as on --timeout (power button,
	// grace, quit) and Run's code is exitcode.Setup with LostErr's
	// sentence. nil: never.
	Lost <-chan struct{}
	// LostErr explains a closed Lost (called once it is closed).
	LostErr func() error
}

// Result is how a run ended.
type Result struct {
	// Code is the process exit code vmrun should use (see exitcode).
	Code int
	// Err explains a non-zero Code in one sentence.
	Err error
	// Command is true when Code is the exit code of the command Exec ran
	// in the guest (passed through, not one of vmrun's own codes).
	Command bool
}

// execResult is what Options.Exec returned.
type execResult struct {
	code int
	err  error
}

// Timings used by the supervisor that are not user options.
const (
	commandTimeout = 5 * time.Second // any single QMP command
	quitWait       = 5 * time.Second // after quit, before SIGKILL
	panicWait      = 3 * time.Second // after GUEST_PANICKED, before quit
	// outputDrainWait bounds the copy of QEMU's last output after it
	// exited: generous, since a loaded machine can be slow to schedule the
	// copiers, and spent only if something else holds QEMU's pipes.
	outputDrainWait = 10 * time.Second
)

// supervisor holds the state of one run.
type supervisor struct {
	opts    Options
	cmd     *exec.Cmd
	waitc   chan error
	stderr  *linetail.Tail
	copied  <-chan struct{} // closed when QEMU's output has been copied
	drained bool
	client  *qmp.Client
	events  <-chan qmp.Event
	stopped bool // a stop was requested (signal or time-out)
	forced  bool
	timeout bool
	panic   bool
	lost    error // the attachment's sentence, once Lost closed

	graceTimer *time.Timer
	quitTimer  *time.Timer
	panicTimer *time.Timer

	execc      chan execResult
	execCancel context.CancelFunc
	exec       *execResult
	// execStopped: a stop request (signal, vmrun stop) came before Exec
	// returned.
	execStopped bool

	swapc chan swapReq  // SwapNIC's requests
	over  chan struct{} // closed when supervise returned
	nics  nicSwapper
	late  *NIC // PlugNIC's NIC, plugged in before the guest runs
}

// Run starts QEMU as described by cl and supervises it until it exits: it
// is Start followed by Supervise, a start failure being a set-up failure.
func Run(ctx context.Context, cl Cmdline, opts Options) Result {
	p, err := Start(cl, opts)
	if err != nil {
		return Result{Code: exitcode.Setup, Err: err}
	}
	return p.Supervise(ctx)
}

// Process is a QEMU that Start launched, paused before the guest runs,
// until Supervise has seen it exit.
type Process struct {
	s      *supervisor
	swapMu sync.Mutex // one SwapNIC at a time
}

// WarmUp does, in the background, what Go does once per process before
// its first child: it checks that pidfds work, with a child of its own (a
// vfork that exits at once), which otherwise lies on the way from Start
// to QEMU's exec: 0.2–0.4 ms at the median on the loaded 2-CPU
// development VM (BenchmarkWarmUp), 1–5 ms in traces at load 9. A run
// calls it as its set-up begins.
func WarmUp() { go warmUp() }

// warmUp is WarmUp's work: FindProcess has the check done (once,
// whichever call comes first), then opens a pidfd of this process.
func warmUp() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Release()
	}
}

// Start launches QEMU as described by cl, paused (-S), and calls
// opts.Started with its pid. It closes its own copies of cl.ExtraFiles
// once QEMU has inherited them (also when QEMU could not start), so
// non-persistent taps live exactly as long as QEMU. QEMU runs in its own
// process group and is killed if vmrun dies.
func Start(cl Cmdline, opts Options) (*Process, error) {
	if opts.QMPTimeout == 0 {
		// Generous: on a loaded machine with a cold page cache QEMU can
		// take tens of seconds to greet; the bound only ends the wait for
		// a QEMU that hangs (one that exits ends it at once).
		opts.QMPTimeout = 2 * time.Minute
	}
	if opts.Notify == nil {
		opts.Notify = func(string, ...any) {}
	}
	if opts.Step == nil {
		opts.Step = func(string, ...any) {}
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	s := &supervisor{opts: opts, stderr: linetail.NewSkipBlank(8),
		swapc: make(chan swapReq), over: make(chan struct{}), nics: nicSwapper{deleted: make(chan string, 8), step: opts.Step, notify: opts.Notify}}
	err := s.start(cl)
	closeFiles(cl.ExtraFiles)
	if err != nil {
		return nil, err
	}
	return &Process{s: s}, nil
}

// Supervise connects QMP, resumes the guest and handles events, stop
// requests and time-outs until QEMU exits, and says how the run ended.
func (p *Process) Supervise(ctx context.Context) Result {
	s := p.s
	res := s.supervise(ctx)
	close(s.over)
	s.stopTimers()
	if s.execCancel != nil {
		s.execCancel()
	}
	s.drain()
	if res.Code != exitcode.OK && res.Err == nil && !res.Command {
		res.Err = errors.New(exitcode.Describe(res.Code))
	}
	return res
}

// PlugNIC sets the NIC of a VM built with LateNIC: Supervise plugs it in
// over QMP (getfd, netdev_add, device_add on the NIC's root port, as
// NIC number 0, what SwapNIC later replaces) once the QMP handshake is
// done and before the guest runs, then closes the caller's copies of its
// files, as Start does with the command line's. Call it before
// Supervise. Should the plug fail, Supervise stops QEMU and returns a
// set-up failure.
func (p *Process) PlugNIC(nic NIC) {
	nic.Hotplug = true
	p.s.late = &nic
}

// Abort kills a QEMU that Supervise never ran for (the set-up failed
// after Start), waits for its end and for its output to be copied, and
// closes the files of a NIC given to PlugNIC. It does nothing after
// Supervise.
func (p *Process) Abort() {
	s := p.s
	select {
	case <-s.over:
		return
	default:
	}
	s.kill()
	<-s.waitc
	close(s.over)
	s.drain()
	if s.late != nil {
		closeFiles(s.late.Files)
		closeFiles(s.late.VhostFiles)
	}
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// start launches QEMU and starts copying its output.
func (s *supervisor) start(cl Cmdline) error {
	cmd := exec.Command(cl.Path, cl.Args...)
	cmd.ExtraFiles = cl.ExtraFiles
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.opts.RunAs != nil {
		// The child changes its ids before it execs QEMU; the kernel then
		// clears its permitted, effective and ambient sets (all of its
		// uids left 0), and Go sets Pdeathsig after the change.
		cmd.SysProcAttr.Credential = s.opts.RunAs.Credential()
	}
	cmd.Env = os.Environ()
	p, err := openStdio(s.opts.Input != nil)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = p.outW, p.errW
	if p.inR != nil {
		cmd.Stdin = p.inR
	}
	err = s.fork(cmd)
	p.closeChild()
	if err != nil {
		p.closeParent()
		return startError(cl.Path, s.opts.RunAs, err)
	}
	s.cmd = cmd
	if s.opts.Started != nil {
		s.opts.Started(cmd.Process.Pid)
	}
	s.copied = s.copyOutput(p)
	return nil
}

// drain lets the output copiers finish (once QEMU has exited) so that the
// last console lines are shown and QEMU's last words are in the tail.
// QEMU's pipes end as soon as they are drained; the bound only guards
// against a process QEMU started that still holds them (it would keep
// vmrun waiting forever).
func (s *supervisor) drain() {
	if s.drained {
		return
	}
	s.drained = true
	select {
	case <-s.copied:
	case <-time.After(outputDrainWait):
		s.opts.Notify("QEMU's output did not end within %s of its exit (a process it started may still hold it): its last lines may be missing", outputDrainWait)
	}
}

// fork starts cmd on a dedicated, locked OS thread: Pdeathsig is tied to
// the thread that forked, so the thread stays alive until QEMU exits, and
// then delivers QEMU's end on s.waitc.
func (s *supervisor) fork(cmd *exec.Cmd) error {
	startc := make(chan error, 1)
	s.waitc = make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: this thread is QEMU's parent until it exits,
		// and what Confine changes must die with it.
		if s.opts.RunAs != nil || s.opts.NoNewPrivs {
			if err := privdrop.Confine(s.opts.RunAs != nil); err != nil {
				startc <- err
				return
			}
		}
		if err := cmd.Start(); err != nil {
			startc <- err
			return
		}
		startc <- nil
		s.waitc <- cmd.Wait()
	}()
	return <-startc
}

// copyOutput copies QEMU's stdout to the console and its stderr to
// opts.Stderr and the tail, and the input to QEMU's stdin. The channel it
// returns is closed once both outputs ended.
func (s *supervisor) copyOutput(p *stdio) <-chan struct{} {
	console := s.opts.Console
	if console == nil {
		console = io.Discard
	}
	var wg sync.WaitGroup
	wg.Add(2)
	// QEMU's output is read to its end whatever becomes of its destinations.
	go func() { defer wg.Done(); _, _ = io.Copy(Lossy(console, nil), p.outR); p.outR.Close() }()
	go func() {
		defer wg.Done()
		// The tail keeps QEMU's last words when vmrun's stderr has gone.
		_, _ = io.Copy(io.MultiWriter(Lossy(s.opts.Stderr, nil), s.stderr), p.errR)
		p.errR.Close()
	}()
	if p.inW != nil {
		// This goroutine may stay blocked reading the terminal after QEMU
		// ends; it holds nothing that needs cleaning up.
		go func() { _, _ = io.Copy(p.inW, s.opts.Input); p.inW.Close() }()
	}
	copied := make(chan struct{})
	go func() { wg.Wait(); close(copied) }()
	return copied
}

// stdio holds the pipes of QEMU's standard streams: the child's ends (W
// for its output, inR for its input) and vmrun's.
type stdio struct {
	outR, outW, errR, errW, inR, inW *os.File
}

// openStdio makes the output pipes, and the input pipe when input is set.
func openStdio(input bool) (*stdio, error) {
	var p stdio
	var err error
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.errR, p.errW, err = os.Pipe(); err == nil && input {
		p.inR, p.inW, err = os.Pipe()
	}
	if err != nil {
		p.closeChild()
		p.closeParent()
		return nil, err
	}
	return &p, nil
}

// closeChild closes the ends QEMU has inherited (or never will).
func (p *stdio) closeChild() {
	closeFiles([]*os.File{p.outW, p.errW, p.inR})
}

// closeParent closes vmrun's ends, when QEMU did not start.
func (p *stdio) closeParent() {
	closeFiles([]*os.File{p.outR, p.errR, p.inW})
}

func startError(path string, runAs *privdrop.User, err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("QEMU binary %s not found: install QEMU (apt-get install qemu-system-x86) or give its path with --qemu", path)
	}
	if errors.Is(err, os.ErrPermission) && runAs != nil {
		return fmt.Errorf("QEMU binary %s cannot be run by %s, the user QEMU runs as: make it (and its directories) executable by that user, or give another with --qemu", path, runAs)
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("QEMU binary %s is not executable: check its permissions or give another with --qemu", path)
	}
	return fmt.Errorf("start QEMU %s: %w", path, err)
}

// supervise connects QMP, resumes the guest and handles events, stop
// requests and time-outs until QEMU exits.
func (s *supervisor) supervise(ctx context.Context) Result {
	if res, ok := s.connect(ctx); !ok {
		return res
	}
	var deadline <-chan time.Time
	if s.opts.Timeout > 0 {
		t := time.NewTimer(s.opts.Timeout)
		defer t.Stop()
		deadline = t.C
	}
	done, lost := ctx.Done(), s.opts.Lost
	if s.opts.Exec != nil {
		s.startExec(ctx)
	}
	for {
		select {
		case err := <-s.waitc:
			s.collectExec()
			return s.result(err)
		case r := <-s.execc:
			s.execc = nil
			s.exec = &r
			// The command is done: power the guest off (quietly).
			if !s.stopped {
				s.stopped = true
				s.powerdown()
			}
		case ev, ok := <-s.events:
			if !ok {
				s.events = nil
				continue
			}
			if s.opts.Event != nil {
				s.opts.Event(ev)
			}
			s.event(ev)
		case r := <-s.swapc:
			go func() { r.done <- s.nics.run(r) }()
		case sig := <-s.opts.Stop:
			if s.opts.Exec != nil && s.exec == nil {
				s.execStopped = true
			}
			if sig == syscall.SIGQUIT {
				s.stopped = true
				if !s.forced {
					s.opts.Notify("forced stop requested (SIGQUIT): stopping QEMU now")
					s.force()
				}
				continue
			}
			s.requestStop("")
		case <-done:
			done = nil
			if s.opts.Exec != nil && s.exec == nil {
				s.execStopped = true
			}
			s.stopped = true
			s.force()
		case <-lost:
			lost = nil
			s.loseNetwork()
		case <-deadline:
			deadline = nil
			s.timeout = true
			s.requestStop(fmt.Sprintf("--timeout %s expired: powering the VM off", s.opts.Timeout))
		case <-timerC(s.graceTimer):
			s.graceTimer = nil
			s.opts.Notify("the guest did not power off within %s (--shutdown-grace): stopping QEMU", s.opts.Grace)
			s.quit()
		case <-timerC(s.panicTimer):
			s.panicTimer = nil
			s.quit()
		case <-timerC(s.quitTimer):
			s.quitTimer = nil
			s.kill()
		}
	}
}

// loseNetwork stops the VM whose network attachment died, the way
// --timeout does.
func (s *supervisor) loseNetwork() {
	s.lost = errors.New("the guest's network attachment failed")
	if s.opts.LostErr != nil {
		if err := s.opts.LostErr(); err != nil {
			s.lost = err
		}
	}
	s.requestStop("the guest has lost its network: powering the VM off")
}

// startExec runs opts.Exec in its own goroutine.
func (s *supervisor) startExec(ctx context.Context) {
	ectx, cancel := context.WithCancel(ctx)
	s.execCancel = cancel
	s.execc = make(chan execResult, 1)
	go func() {
		code, err := s.opts.Exec(ectx)
		s.execc <- execResult{code, err}
	}()
}

// collectExec ends a still running Exec (QEMU is gone) and waits briefly
// for what it says, so a failure it explains (no agent) is not lost.
func (s *supervisor) collectExec() {
	if s.execc == nil {
		return
	}
	s.execCancel()
	select {
	case r := <-s.execc:
		s.exec = &r
	case <-time.After(2 * time.Second):
	}
	s.execc = nil
}

// timerC returns t's channel, or nil (never ready) for a nil timer.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func (s *supervisor) stopTimers() {
	for _, t := range []*time.Timer{s.graceTimer, s.quitTimer, s.panicTimer} {
		if t != nil {
			t.Stop()
		}
	}
	if s.client != nil {
		s.client.Close()
	}
}

// connect waits for the QMP handshake (or QEMU's early exit, or a stop
// request) and resumes the paused VM.
func (s *supervisor) connect(ctx context.Context) (Result, bool) {
	type conn struct {
		c   *qmp.Client
		err error
	}
	connc := make(chan conn, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		c, err := qmp.Connect(cctx, s.opts.QMPPath, s.opts.QMPTimeout)
		connc <- conn{c, err}
	}()
	for {
		select {
		case r := <-connc:
			if r.err != nil && s.stopped {
				<-s.waitc
				return Result{Code: exitcode.OK}, false
			}
			if r.err != nil {
				s.kill()
				werr := <-s.waitc
				return Result{Code: exitcode.Setup, Err: s.startupError(werr, r.err)}, false
			}
			s.client = r.c
			s.nics.c = r.c
			s.events = r.c.Events()
			if err := s.resume(ctx, r.c); err != nil {
				s.kill()
				werr := <-s.waitc
				if errors.Is(err, errPlug) {
					s.drain()
					return Result{Code: exitcode.Setup, Err: err}, false
				}
				return Result{Code: exitcode.Setup, Err: s.startupError(werr, err)}, false
			}
			return Result{}, true
		case err := <-s.waitc:
			cancel()
			if r := <-connc; r.c != nil {
				r.c.Close()
			}
			if s.stopped {
				return Result{Code: exitcode.OK}, false
			}
			return Result{Code: exitcode.Setup, Err: s.startupError(err, nil)}, false
		case <-s.opts.Stop:
			// Nothing has run in the guest yet: no power-off to wait for.
			s.stopped = true
			s.kill()
		}
	}
}

// errPlug: PlugNIC's NIC could not be plugged in.
var errPlug = errors.New("the guest's NIC could not be plugged in")

// resume calls Ready, completes the paused VM — it plugs PlugNIC's NIC
// in — and resumes the guest.
func (s *supervisor) resume(ctx context.Context, c *qmp.Client) error {
	if s.opts.Ready != nil {
		s.opts.Ready(c.Version)
	}
	if s.late != nil {
		pctx, cancel := context.WithTimeout(ctx, 4*commandTimeout)
		t0 := time.Now()
		err := s.nics.plug(pctx, *s.late)
		cancel()
		if err == nil && s.opts.Plugged != nil {
			s.opts.Plugged(time.Since(t0))
		}
		closeFiles(s.late.Files)
		closeFiles(s.late.VhostFiles)
		if err != nil {
			return fmt.Errorf("%w: %w", errPlug, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	err := c.Cont(cctx)
	cancel()
	if err != nil {
		return err
	}
	if s.opts.Running != nil {
		s.opts.Running()
	}
	return nil
}

// startupError explains why QEMU did not come up, preferring QEMU's own
// last words on stderr.
func (s *supervisor) startupError(waitErr, qmpErr error) error {
	s.drain()
	msg := lastWords(s.stderr)
	switch {
	case msg != "":
		return fmt.Errorf("QEMU could not start: %s", msg)
	case waitErr != nil:
		return fmt.Errorf("QEMU could not start: %s", describeExit(s.cmd.ProcessState, waitErr))
	case qmpErr != nil:
		return fmt.Errorf("QEMU could not start: %w", qmpErr)
	}
	return errors.New("QEMU exited before the guest started")
}

func (s *supervisor) event(ev qmp.Event) {
	switch ev.Name {
	case qmp.EventShutdown:
		if ev.String("reason") == "guest-panic" {
			s.panic = true
		}
	case qmp.EventGuestPanicked:
		if !s.panic {
			s.opts.Notify("the guest kernel panicked (QEMU action: %s)", ev.String("action"))
		}
		s.panic = true
		if s.panicTimer == nil && s.quitTimer == nil {
			// QEMU's default action ends the process; make sure of it.
			s.panicTimer = time.NewTimer(panicWait)
		}
	case qmp.EventReset:
		s.opts.Notify("the guest reset itself (%s)", ev.String("reason"))
	case qmp.EventStop:
		if !s.stopped && !s.panic {
			s.opts.Notify("QEMU paused the guest (see QEMU's messages above); `vmrun stop` ends it")
		}
	case qmp.EventDeviceDeleted:
		if id := ev.String("device"); id != "" && !s.nics.released(id) {
			select {
			case s.nics.deleted <- id:
			default: // nobody waits for it
			}
		}
	}
}

// requestStop handles a stop request: the first presses the power button
// and starts the grace period, a second forces QEMU to quit.
func (s *supervisor) requestStop(why string) {
	if s.stopped {
		if !s.forced {
			s.opts.Notify("second stop request: forcing QEMU to quit")
			s.force()
		}
		return
	}
	s.stopped = true
	if why == "" {
		why = "stop requested: powering the guest off (again to force)"
	}
	s.opts.Notify("%s", why)
	s.powerdown()
}

// powerdown presses the power button and starts the grace period (or
// quits at once without QMP).
func (s *supervisor) powerdown() {
	if s.client == nil {
		s.force()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	err := s.client.SystemPowerdown(ctx)
	cancel()
	if err != nil {
		s.opts.Notify("could not press the guest's power button (%v): stopping QEMU", err)
		s.quit()
		return
	}
	s.graceTimer = time.NewTimer(s.opts.Grace)
}

func (s *supervisor) force() {
	s.forced = true
	s.quit()
}

// quit asks QEMU to exit (QMP quit, or SIGTERM without QMP) and arms the
// SIGKILL timer.
func (s *supervisor) quit() {
	if s.quitTimer != nil {
		return
	}
	sent := false
	if s.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		sent = s.client.Quit(ctx) == nil
		cancel()
	}
	if !sent && s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	s.quitTimer = time.NewTimer(quitWait)
}

// kill sends SIGKILL to QEMU's process group (QEMU and nothing else: the
// group was created for it).
func (s *supervisor) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = s.cmd.Process.Kill()
	}
}

// result maps how QEMU ended to vmrun's exit code.
func (s *supervisor) result(waitErr error) Result {
	st := s.cmd.ProcessState
	switch {
	case s.panic:
		return Result{Code: exitcode.GuestPanic, Err: errors.New("the guest kernel panicked; see its console output above")}
	case s.lost != nil:
		return Result{Code: exitcode.Setup, Err: s.lost}
	case s.execStopped && !s.timeout:
		return Result{Code: exitcode.Setup, Err: errors.New("the VM was stopped on request before the --exec command finished")}
	case s.exec != nil && s.exec.err != nil && !errors.Is(s.exec.err, context.Canceled):
		return Result{Code: exitcode.Of(s.exec.err), Err: s.exec.err}
	case s.timeout:
		return Result{Code: exitcode.Timeout, Err: fmt.Errorf("--timeout %s expired; the VM was stopped", s.opts.Timeout)}
	case s.exec != nil && s.exec.err == nil:
		return Result{Code: s.exec.code, Command: true}
	case s.opts.Exec != nil && s.stopped:
		return Result{Code: exitcode.Setup, Err: errors.New("the VM was stopped on request before the --exec command finished")}
	case s.opts.Exec != nil && waitErr == nil && st != nil && st.ExitCode() == 0:
		return Result{Code: exitcode.Setup, Err: errors.New("the guest powered off before the --exec command finished")}
	case s.stopped:
		return Result{Code: exitcode.OK}
	case waitErr == nil && st != nil && st.ExitCode() == 0:
		return Result{Code: exitcode.OK}
	}
	msg := describeExit(st, waitErr)
	s.drain()
	if last := lastWords(s.stderr); last != "" {
		msg += ": " + last
	}
	return Result{Code: exitcode.QEMUDied, Err: fmt.Errorf("QEMU died: %s", msg)}
}

func describeExit(st *os.ProcessState, err error) string {
	if st == nil {
		return fmt.Sprint(err)
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %s", ws.Signal())
	}
	return fmt.Sprintf("exit status %d", st.ExitCode())
}

// lastWords returns the last line QEMU wrote on stderr, without its
// "qemu-system-x86_64: " prefix.
func lastWords(t *linetail.Tail) string {
	l := t.Last()
	if i := strings.Index(l, ": "); i > 0 && strings.HasPrefix(l, "qemu-system") {
		l = l[i+2:]
	}
	return l
}
