package main

import (
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/internal/console"
	"github.com/vmrun/vmrun/internal/dhcpverdict"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/guestaddr"
	"github.com/vmrun/vmrun/internal/guestexec"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/undo"
	"github.com/vmrun/vmrun/internal/vmbuild"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/gc"
)

// session is one run of a VM whose configuration and network plan are
// decided: it takes the VM's name, creates what the VM needs, runs QEMU
// and removes everything again. Its steps run in order — lock, record,
// attach, build, start, supervise (with netplan.LateNIC: build and start
// before attach, whose NIC Supervise plugs in) — and each pushes the undo
// of what it created onto the one undo stack right after it succeeds;
// detach unwinds that stack, whichever step the run ended in.
type session struct {
	c    *cli.Context
	spec config.Spec
	vm   launcher.VM
	plan netsetup.Plan
	conf confine.QEMU
	root string         // the runtime root, holding one directory per VM
	sigc chan os.Signal // stop requests, caught before the session began
	// pipesCaught returns once a closed pipe can no longer kill vmrun
	// (brokenPipes): waited for before the first thing the run creates;
	// nil when there is nothing to wait for.
	pipesCaught func()
	notify      func(string, ...any)
	step        func(string, ...any) // a --verbose progress line
	det         *detached            // a detached supervisor's; nil in the foreground
	// sshForward is the host end of user mode's forward to the guest's
	// port 22 (sshForward), "" when none.
	sshForward string

	undo    undo.Stack
	dir     *rundir.Dir // the VM's runtime directory, held locked
	sock    string      // the QMP socket's path
	cl      launcher.Cmdline
	tail    *linetail.Tail // the serial console's last lines
	qemu    *launcher.Process
	swap    swapFunc             // a unit test's SwapNICLive; nil: qemu's
	net     netState             // the network attachment, once attached
	verdict dhcpverdict.Verifier // --net auto's check of a layer-2 choice

	running func()             // what Supervise calls once the guest runs (supervise sets it)
	agent   *guestexec.Channel // the guest agent's channel; nil with --agent off
	addrs   *guestaddr.Book    // the guest's addresses
}

// errStopped ends the set-up on a stop request that came during it: the
// run ends there, cleanly, with exit code 0.
var errStopped = errors.New("stopped during set-up")

// run runs the session's steps and detaches, and returns the run's error
// (its exit code).
func (s *session) run() (err error) {
	if err := s.lock(); err != nil {
		return err
	}
	defer func() { err = s.detach(err) }()
	steps := []func() error{s.record, s.seed, s.attach, s.build, s.start}
	if s.vm.LateNIC = netplan.LateNIC(s.spec.NetMode, s.plan); s.vm.LateNIC {
		// QEMU starts first, the NIC is plugged in once both are ready.
		steps = []func() error{s.record, s.seed, s.build, s.start, s.attach}
	}
	for _, step := range steps {
		if err := step(); errors.Is(err, errStopped) {
			return nil
		} else if err != nil {
			return err
		}
	}
	return s.supervise()
}

// lock creates and locks the VM's runtime directory, and removes what a
// previous run of the same name left behind (its state file says what).
// The directory is not on the undo stack: detach removes it, or keeps it
// for `vmrun gc`, depending on how the unwinding went.
func (s *session) lock() error {
	if s.pipesCaught != nil {
		s.pipesCaught()
	}
	dir, stale, err := rundir.Create(s.root, s.spec.Name)
	if errors.Is(err, rundir.ErrBusy) {
		return exitcode.Usagef("a VM named %q is already running (see `vmrun ls`): choose another --name, or stop it with `vmrun stop %s`", s.spec.Name, s.spec.Name)
	}
	if err != nil {
		return exitcode.Setupf("%w: check that %s is writable, or set %s", err, s.root, rundir.EnvRoot)
	}
	if stale != nil {
		s.notify("removing what a previous run of %q left behind", s.spec.Name)
		if err := gc.GCState(dir.Path, stale); err != nil {
			// Keep the directory and its record for `vmrun gc`.
			_ = dir.Close()
			if errors.Is(err, gc.ErrOtherNetns) { // it says where to run gc
				return exitcode.Setupf("a previous run of %q left objects that cannot be removed from here: %w", s.spec.Name, err)
			}
			return exitcode.Setupf("a previous run of %q left objects that could not be removed: %w; run `vmrun gc` or remove them by hand", s.spec.Name, err)
		}
	}
	s.dir = dir
	return nil
}

// record writes the run's initial state: from here on, `vmrun ls` shows
// the VM and `vmrun gc` knows what it owns.
func (s *session) record() error {
	p := s.plan
	// Where the links will be: gc undoes them only from there. Unknown
	// (an error), gc does not check, as for an older version's record.
	netnsID, netnsInode, _ := netsetup.Netns()
	if err := s.dir.Update(func(st *rundir.State) {
		*st = rundir.State{Name: s.spec.Name, PID: os.Getpid(), Mode: string(p.Mode), Parent: p.Parent, Uplink: p.Uplink,
			MAC: p.MAC.String(), Started: time.Now(), Netns: netnsID, NetnsInode: netnsInode}
	}); err != nil {
		return exitcode.Setupf("%w", err)
	}
	if interrupted(s.sigc) {
		return errStopped
	}
	return nil
}

// attach creates the network attachment the plan decided, and gives its
// fds and options to the VM.
func (s *session) attach() error {
	s.armVerdict()
	ctx := netsetup.WithTrace(s.c.Context, s.trace())
	// A stop request during set-up (e.g. while waiting for a DHCP lease)
	// cancels it; sigc still sees the signal and the run ends cleanly.
	setupCtx, stopSetup := signal.NotifyContext(ctx, stopSignals...)
	att, err := netsetup.Apply(setupCtx, s.plan, s.dir)
	stopSetup()
	if err != nil {
		if interrupted(s.sigc) {
			s.notify("stopped during network set-up; nothing was left behind")
			return errStopped
		}
		return exitcode.Wrap(exitcode.Setup, err)
	}
	s.net.att, s.net.plan = att, s.plan
	s.net.watch(att)
	// The entries follow the attachment a switch put the guest on.
	s.undo.Push("network attachment", func() error { return s.net.current().Undo() })
	// QEMU holds the fds from its start; vmrun's copies go before the
	// links are removed.
	s.undo.Push("network fds", func() error { s.net.current().CloseFiles(); return nil })
	s.vm.NIC = netplan.NIC(att)
	if netplan.Hotplug(s.spec.NetMode, s.vm.NIC) {
		s.vm.NIC.Hotplug = true
	}
	s.step("network attached (%s)", s.plan.Mode)
	if s.vm.LateNIC {
		s.qemu.PlugNIC(*s.vm.NIC)
		go func() { _ = s.dir.Flush() }() // see options' Started
	}
	return nil
}

// trace is how the network set-up reports to the session: --verbose
// steps, notices, and the guest's addresses.
func (s *session) trace() *netsetup.Trace {
	return &netsetup.Trace{
		Step:     func(name string) { s.step("network: %s", name) },
		Event:    func(msg string) { s.step("network: %s", msg) },
		Notice:   func(msg string) { s.notify("%s", msg) },
		Addr:     s.addrs.Add,
		Discover: s.verdict.Discover,
	}
}

// build opens the sockets QEMU inherits (QMP, the guest agent's ports)
// and builds QEMU's command line.
func (s *session) build() error {
	if err := s.listenQMP(); err != nil {
		return err
	}
	if s.spec.Agent {
		ports, ch, err := guestexec.Listen(s.dir)
		if err != nil {
			return exitcode.Setupf("%w", err)
		}
		s.undo.Push("guest agent sockets", ch.Close)
		s.vm.Agent, s.agent = ports, ch
	}
	if s.conf.User == nil {
		s.vm.PIDFile = filepath.Join(s.dir.Path, "qemu.pid")
	} else {
		// QEMU's user cannot write into the runtime directory.
		f, err := confine.OpenRunDir(s.dir.Path)
		if err != nil {
			return exitcode.Setupf("%w", err)
		}
		s.vm.RunDirFile, s.vm.RunDir = f, s.dir.Path
	}
	cl, err := launcher.Build(s.vm)
	if err != nil {
		return exitcode.Setupf("%w", err)
	}
	s.cl = cl
	if interrupted(s.sigc) {
		return errStopped
	}
	return nil
}

// listenQMP listens on the QMP socket, whose listener QEMU inherits.
func (s *session) listenQMP() error {
	sock, err := s.dir.Socket("qmp.sock")
	if err != nil {
		return exitcode.Setupf("%w", err)
	}
	// We hold the VM's lock: a socket file here is a crashed run's leftover.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return exitcode.Setupf("stale QMP socket %s: %w", sock, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return exitcode.Setupf("QMP socket %s: %w", sock, err)
	}
	s.undo.Push("QMP socket", func() error { ln.Close(); return nil })
	if s.vm.QMP, err = ln.File(); err != nil {
		return exitcode.Setupf("QMP socket %s: %w", sock, err)
	}
	s.sock = sock
	return nil
}

// start opens the console's destinations and starts QEMU, paused.
func (s *session) start() error {
	consoleOut, closeLog, err := vmbuild.ConsoleWriter(s.c.App.Writer, s.spec, s.vm.Console, s.notify)
	if err != nil {
		return err
	}
	s.undo.Push("serial log", closeLog)
	if s.det != nil {
		w, err := s.detachedConsole()
		if err != nil {
			return err
		}
		consoleOut = io.MultiWriter(consoleOut, w)
	}
	s.tail = linetail.New(vmbuild.ConsoleTail)
	p, err := launcher.Start(s.cl, s.options(io.MultiWriter(consoleOut, s.tail)))
	if err != nil {
		return exitcode.Wrap(exitcode.Setup, err)
	}
	s.qemu = p
	// Supervise's end is QEMU's; a set-up failing before it kills QEMU.
	s.undo.Push("QEMU", func() error { p.Abort(); return nil })
	s.waitForAddr()
	s.watchAgent()
	return nil
}

// options are the supervisor's options: the console, stop requests,
// progress and state updates, and --exec's command.
func (s *session) options(console io.Writer) launcher.Options {
	opts := launcher.Options{
		QMPPath: s.sock, Timeout: s.spec.Timeout, Grace: s.spec.Grace,
		Console: console, Stderr: s.c.App.ErrWriter, Stop: s.sigc, Notify: s.notify, Step: s.step,
		Lost: s.net.lost, LostErr: s.net.err,
		Started: func(pid int) {
			s.step("QEMU started (pid %d)", pid)
			_ = s.dir.Update(func(st *rundir.State) { st.QEMUPID = pid; st.QMPSocket = s.sock })
			// The run's one wait for the disk (see rundir's doc), off the
			// path to QMP ready; with LateNIC, once the set-up is done.
			if !s.vm.LateNIC {
				go func() { _ = s.dir.Flush() }()
			}
		},
		Ready:   func(v string) { s.step("QMP ready (QEMU %s)", v) },
		Plugged: func(d time.Duration) { s.step("NIC plugged in over QMP in %.1f ms", float64(d.Microseconds())/1000) },
		Running: func() { s.step("guest running"); s.running() },
		RunAs:   s.conf.User, NoNewPrivs: !s.spec.QEMUPrivileged,
	}
	if s.vm.Console == launcher.ConsoleSerial && isTerminal(os.Stdin) {
		opts.Input = os.Stdin
	}
	if s.det != nil {
		s.detachOptions(&opts)
	}
	if len(s.spec.Exec) > 0 {
		oneShotExec(s.c, s.spec, s.dir.Path, s.tail, &opts)
	}
	return opts
}

// supervise runs the guest until QEMU exits and maps how it ended to the
// run's error, showing the console's last lines when it failed unseen.
func (s *session) supervise() error {
	// The uplink's watch and --net auto's DHCP probe start once the guest
	// runs (Supervise calls running in this goroutine): the watch's start
	// reads the host's network (netlink dumps, nl80211), the probe opens
	// its socket and sends a DISCOVER the LAN's server answers, CPU time
	// QEMU's own start would otherwise share.
	followc, started := make(chan func(), 1), false
	s.running = func() { started = true; s.probeL2(); go func() { followc <- s.followUplink() }() }
	defer func() {
		if started {
			(<-followc)()
		}
	}()
	res := s.qemu.Supervise(s.c.Context)
	if s.addrs.TimedOut() && res.Code == exitcode.OK {
		return s.addrTimeout()
	}
	if res.Command {
		return exitcode.Pass(res.Code)
	}
	if res.Code != exitcode.OK {
		if s.vm.Console != launcher.ConsoleSerial && s.tail.Any() {
			vmbuild.PrintTail(s.c.App.ErrWriter, s.tail)
		}
		return exitcode.Wrap(res.Code, res.Err)
	}
	return nil
}

// detach unwinds the undo stack, then removes the runtime directory —
// only when every undo succeeded; otherwise it is kept, with its state
// file recording what is left, for `vmrun gc`. A clean-up failure is
// reported, and is the run's error when the run had none.
func (s *session) detach(err error) error {
	errs := []error{s.undo.Unwind()}
	if s.det != nil {
		// A detached VM's logs outlive its runtime directory, so that
		// `vmrun logs NAME` can still say why it stopped.
		if kerr := console.Keep(s.root, s.spec.Name, s.dir.Path, console.Log, supervisorLog); kerr != nil {
			s.notify("%v", kerr)
		}
	}
	if errs[0] == nil {
		errs = append(errs, s.dir.Remove())
	} else {
		errs = append(errs, s.dir.Close())
	}
	if cerr := errors.Join(errs...); cerr != nil {
		s.notify("clean-up was incomplete (run `vmrun gc`): %v", oneLine(cerr.Error()))
		if err == nil {
			err = exitcode.Setupf("clean-up failed: %w", cerr)
		}
	}
	s.step("cleaned up")
	return err
}
