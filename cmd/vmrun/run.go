package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// runAction boots a VM: validate, plan the network, create the runtime
// directory and links, start and supervise QEMU, then undo everything.
func runAction(c *cli.Context) error {
	t0 := time.Now()
	verbose := c.Bool("verbose")
	notify := notifier(c)
	step := func(format string, args ...any) {
		if verbose {
			notify("%6.1fms "+format, append([]any{float64(time.Since(t0).Microseconds()) / 1000}, args...)...)
		}
	}
	// Catch stop signals before anything is created, so an early Ctrl-C
	// still cleans up. SIGQUIT (vmrun stop --force, Ctrl-\) stops at once.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigc)

	spec, err := resolve(c)
	if err != nil {
		return err
	}
	qemu, err := findQEMU(spec.QEMU, c.IsSet("qemu"))
	if err != nil {
		return err
	}
	kvm, err := chooseAccel(spec.Accel, notify)
	if err != nil {
		return err
	}
	if len(spec.Exec) > 0 && spec.Console == "auto" {
		// The command's output owns stdout; the console goes to
		// --serial-log (and its last lines to stderr on a failure).
		spec.Console = "none"
	}
	console, err := chooseConsole(spec.Console, qemu)
	if err != nil {
		return err
	}
	conf, err := confineQEMU(spec, qemu, kvm)
	if err != nil {
		return err
	}
	step("configuration checked; QEMU will run as %s", conf.describe())

	plan, err := planNetwork(c.Context, spec)
	if err != nil {
		return err
	}
	if plan.Notice != "" {
		notify("%s", plan.Notice)
	}
	step("network plan: %s (%s)", plan.Mode, plan.Reason)
	vm := launcher.VM{
		Name: spec.Name, QEMU: qemu, KVM: kvm, MemMiB: spec.MemMiB, CPUs: spec.CPUs,
		Disks: spec.Disks, Snapshot: spec.Snapshot, Kernel: spec.Kernel, Initrd: spec.Initrd,
		Append: spec.Append, Console: console, ExtraArgs: spec.QEMUArgs, Shares: spec.Shares, Sandbox: conf.sandbox,
	}
	if c.Bool("dry-run") {
		return dryRun(c, spec, vm, plan, conf)
	}
	if conf.noSandbox != "" {
		notify("%s", conf.noSandbox)
	}
	if err := conf.checkAccess(spec); err != nil {
		return err
	}
	// Disks are opened before anything is created: one that cannot be
	// opened is a usage error with nothing to undo.
	closeDisks, err := conf.openDisks(spec, vm.Disks)
	if err != nil {
		return err
	}
	defer closeDisks()
	bootFiles, closeBoot, err := conf.openBoot(spec)
	if err != nil {
		return err
	}
	defer closeBoot()
	vm.BootFiles = bootFiles
	for _, sh := range spec.Shares {
		ro := ""
		if sh.ReadOnly {
			ro = ", read-only"
		}
		notify("--share %s: virtio-9p, tag %s%s (in the guest: mount -t 9p -o trans=virtio,version=9p2000.L %s /mnt/%s)", sh.Path, sh.Tag, ro, sh.Tag, sh.Tag)
	}
	if !kvm {
		notify("KVM is not available (/dev/kvm missing or not usable): using TCG software emulation, which is much slower")
	}
	if !plan.Vhost && plan.Mode.UsesTap() {
		notify("/dev/vhost-net is missing: the guest's network runs without vhost acceleration (vhost=off)")
	}

	return boot(c, spec, vm, plan, conf, sigc, step)
}

// boot creates what the VM needs, runs it, and removes everything again.
func boot(c *cli.Context, spec config.Spec, vm launcher.VM, plan netsetup.Plan, conf qemuConfinement, sigc chan os.Signal, step func(string, ...any)) (err error) {
	notify := notifier(c)
	root := rundir.Root()
	dir, stale, err := rundir.Create(root, spec.Name)
	if errors.Is(err, rundir.ErrBusy) {
		return exitcode.Usagef("a VM named %q is already running (see `vmrun ls`): choose another --name, or stop it with `vmrun stop %s`", spec.Name, spec.Name)
	}
	if err != nil {
		return exitcode.Setupf("%w: check that %s is writable, or set %s", err, root, rundir.EnvRoot)
	}
	if stale != nil {
		notify("removing what a previous run of %q left behind", spec.Name)
		if err := netsetup.GCState(dir.Path, stale); err != nil {
			// Keep the directory and its record for `vmrun gc`.
			_ = dir.Close()
			return exitcode.Setupf("a previous run of %q left objects that could not be removed: %w; run `vmrun gc` or remove them by hand", spec.Name, err)
		}
	}
	// Everything below is undone by the deferred cleanup, in reverse order.
	var undo []func() error
	defer func() {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		if errors.Join(errs...) == nil {
			errs = append(errs, dir.Remove())
		} else {
			// Keep the directory: its state file records what is left.
			errs = append(errs, dir.Close())
		}
		if cerr := errors.Join(errs...); cerr != nil {
			notify("clean-up was incomplete (run `vmrun gc`): %v", oneLine(cerr.Error()))
			if err == nil {
				err = exitcode.Setupf("clean-up failed: %w", cerr)
			}
		}
		step("cleaned up")
	}()
	if err := dir.Update(func(s *rundir.State) {
		*s = rundir.State{Name: spec.Name, PID: os.Getpid(), Mode: string(plan.Mode), Parent: plan.Parent,
			MAC: plan.MAC.String(), Started: time.Now()}
	}); err != nil {
		return exitcode.Setupf("%w", err)
	}
	if interrupted(sigc) {
		return nil
	}

	ctx := netsetup.WithTrace(c.Context, &netsetup.Trace{
		Step:   func(name string) { step("network: %s", name) },
		Event:  func(msg string) { step("network: %s", msg) },
		Notice: func(msg string) { notify("%s", msg) },
	})
	// A stop request during set-up (e.g. while waiting for a DHCP lease)
	// cancels it; sigc still sees the signal and the run ends cleanly.
	setupCtx, stopSetup := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	att, err := netsetup.Apply(setupCtx, plan, dir)
	stopSetup()
	if err != nil {
		if interrupted(sigc) {
			notify("stopped during network set-up; nothing was left behind")
			return nil
		}
		return exitcode.Wrap(exitcode.Setup, err)
	}
	undo = append(undo, att.Undo)
	vm.NIC = nicOf(att)
	step("network attached (%s)", plan.Mode)

	sock, err := dir.Socket("qmp.sock")
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
	undo = append(undo, func() error { ln.Close(); return nil })
	if vm.QMP, err = ln.File(); err != nil {
		return exitcode.Setupf("QMP socket %s: %w", sock, err)
	}
	if spec.Agent {
		ports, closeAgent, err := listenAgent(dir)
		if err != nil {
			return exitcode.Setupf("%w", err)
		}
		undo = append(undo, closeAgent)
		vm.Agent = ports
	}
	if conf.user == nil {
		vm.PIDFile = filepath.Join(dir.Path, "qemu.pid")
	} else {
		// QEMU's user cannot write into the runtime directory.
		if vm.RunDirFile, err = openRunDir(dir.Path); err != nil {
			return exitcode.Setupf("%w", err)
		}
		vm.RunDir = dir.Path
	}
	cl, err := launcher.Build(vm)
	if err != nil {
		return exitcode.Setupf("%w", err)
	}
	if interrupted(sigc) {
		return nil
	}
	consoleOut, closeLog, err := consoleWriter(c, spec, vm.Console)
	if err != nil {
		return err
	}
	undo = append(undo, closeLog)
	tail := linetail.New(consoleTail)
	consoleOut = io.MultiWriter(consoleOut, tail)

	opts := launcher.Options{
		QMPPath: sock, Timeout: spec.Timeout, Grace: spec.Grace,
		Console: consoleOut, Stderr: c.App.ErrWriter, Stop: sigc, Notify: notify,
		Started: func(pid int) {
			step("QEMU started (pid %d)", pid)
			_ = dir.Update(func(s *rundir.State) { s.QEMUPID = pid; s.QMPSocket = sock })
		},
		Ready: func(v string) { step("QMP ready (QEMU %s)", v) },
		RunAs: conf.user, NoNewPrivs: !spec.QEMUPrivileged,
	}
	if vm.Console == launcher.ConsoleSerial && isTerminal(os.Stdin) {
		opts.Input = os.Stdin
	}
	if len(spec.Exec) > 0 {
		oneShotExec(c, spec, dir.Path, tail, &opts)
	}
	res := launcher.Run(c.Context, cl, opts)
	att.CloseFiles()
	if res.Command {
		return exitcode.Pass(res.Code)
	}
	if res.Code != exitcode.OK {
		if vm.Console != launcher.ConsoleSerial && tail.Any() {
			printTail(c.App.ErrWriter, tail)
		}
		return exitcode.Wrap(res.Code, res.Err)
	}
	return nil
}

// consoleTail is how many console lines a failure report shows.
const consoleTail = 20

// printTail writes the console's last lines to w (a failure report for a
// console that was not shown).
func printTail(w io.Writer, tail *linetail.Tail) {
	lines := tail.Lines()
	fmt.Fprintf(w, "vmrun: the last %d lines of the guest's serial console:\n", len(lines))
	for _, l := range lines {
		fmt.Fprintf(w, "  | %s\n", l)
	}
}

// interrupted reports (and consumes) a stop request that came in during
// set-up: the run ends there, cleanly, with exit code 0.
func interrupted(sigc chan os.Signal) bool {
	select {
	case <-sigc:
		return true
	default:
		return false
	}
}

// nicOf converts a netsetup attachment into the launcher's NIC.
func nicOf(a *netsetup.Attachment) *launcher.NIC {
	if a == nil || a.Backend == "" {
		return nil
	}
	n := &launcher.NIC{Backend: a.Backend, Files: a.Files, VhostFiles: a.VhostFiles, MAC: a.MAC, Options: a.Options}
	if a.Backend == "tap" {
		n.MTU = a.MTU
	}
	return n
}

// planNetwork detects the host's facts and decides the attachment.
func planNetwork(ctx context.Context, spec config.Spec) (netsetup.Plan, error) {
	req := netsetup.Request{
		Mode: spec.NetMode, Parent: spec.NetParent, Uplink: spec.Uplink, Name: spec.Name,
		MAC: spec.MAC, MACSet: spec.MACSet, Queues: spec.CPUs, Forwards: spec.Forwards, NAT: spec.NAT,
		GuestIP: spec.GuestIP, Gateway: spec.Gateway, NoHostLink: spec.NoHostLink,
	}
	facts, err := netsetup.Detect(ctx, req)
	if err != nil {
		return netsetup.Plan{}, exitcode.Wrap(planCode(err), err)
	}
	plan, err := netsetup.Decide(facts, req)
	if err != nil {
		return netsetup.Plan{}, exitcode.Wrap(planCode(err), err)
	}
	return enforceACL(facts, req, plan)
}

// planCode is the exit code of a planning error: a refusal of the request
// itself (--net user --guest-ip ..., a named interface that does not
// exist) is a usage error; what the host lacks is a set-up failure.
func planCode(err error) int {
	if netsetup.IsRequestError(err) {
		return exitcode.Usage
	}
	return exitcode.Setup
}

// findQEMU resolves the QEMU binary. A missing binary the user named is a
// usage error; a missing default QEMU is a set-up problem of the host.
func findQEMU(name string, explicit bool) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if explicit {
		return "", exitcode.Usagef("--qemu %s: no such executable; give the path of qemu-system-x86_64", name)
	}
	return "", exitcode.Setupf("QEMU (%s) is not installed: install it with `apt-get install qemu-system-x86`, or give its path with --qemu", name)
}

// chooseAccel decides between KVM and TCG.
func chooseAccel(accel string, notify func(string, ...any)) (bool, error) {
	usable := kvmUsable()
	switch accel {
	case "kvm":
		if !usable {
			return false, exitcode.Setupf("--accel kvm: /dev/kvm is missing or not usable by you; enable virtualization (and add yourself to group kvm), or use --accel tcg")
		}
		return true, nil
	case "tcg":
		return false, nil
	}
	return usable, nil
}

func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// chooseConsole resolves --console auto: a window when a display is
// available and QEMU can draw one, otherwise the serial console.
func chooseConsole(choice, qemu string) (launcher.Console, error) {
	switch choice {
	case "serial":
		return launcher.ConsoleSerial, nil
	case "none":
		return launcher.ConsoleNone, nil
	case "gui":
		if !hasDisplay() {
			return "", exitcode.Usagef("--console gui: no display (DISPLAY and WAYLAND_DISPLAY are unset); use --console serial")
		}
		if !launcher.ProbeGUI(qemu) {
			return "", exitcode.Setupf("--console gui: %s has no GTK or SDL display; install qemu-system-gui, or use --console serial", qemu)
		}
		return launcher.ConsoleGUI, nil
	}
	if hasDisplay() && launcher.ProbeGUI(qemu) {
		return launcher.ConsoleGUI, nil
	}
	return launcher.ConsoleSerial, nil
}

func hasDisplay() bool {
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// consoleWriter returns where the serial console goes and how to close it.
func consoleWriter(c *cli.Context, spec config.Spec, console launcher.Console) (io.Writer, func() error, error) {
	var ws []io.Writer
	if console == launcher.ConsoleSerial {
		ws = append(ws, c.App.Writer)
	}
	closeLog := func() error { return nil }
	if spec.SerialLog != "" {
		f, err := os.OpenFile(spec.SerialLog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, nil, exitcode.Usagef("--serial-log %s cannot be written: %w", spec.SerialLog, errors.Unwrap(err))
		}
		if spec.Timestamps {
			ws = append(ws, newStampWriter(f))
		} else {
			ws = append(ws, f)
		}
		closeLog = f.Close
	}
	return io.MultiWriter(ws...), closeLog, nil
}

// dryRun prints the plan and the exact QEMU command line, creating nothing.
func dryRun(c *cli.Context, spec config.Spec, vm launcher.VM, plan netsetup.Plan, conf qemuConfinement) error {
	sock := filepath.Join(rundir.Root(), vm.Name, "qmp.sock")
	if conf.user == nil {
		vm.PIDFile = filepath.Join(rundir.Root(), vm.Name, "qemu.pid")
	} else {
		// As a real run: disks as fdsets (placeholders; the backing chain
		// is not followed here) and the runtime directory's label.
		vm.RunDir = filepath.Join(rundir.Root(), vm.Name)
		if vm.Kernel != "" {
			vm.BootFiles = &launcher.BootFiles{}
		}
		for i := range vm.Disks {
			vm.Disks[i].Files = &launcher.DiskFiles{Image: []*os.File{nil}}
			if !vm.Snapshot {
				vm.Disks[i].Files.Image = append(vm.Disks[i].Files.Image, nil)
			}
		}
	}
	vm.NIC = nicOf(netsetup.Preview(plan))
	if spec.Agent {
		vm.Agent = &launcher.AgentPorts{} // placeholders: fds passed by vmrun
	}
	cl, err := launcher.Build(vm)
	if err != nil {
		return exitcode.Usagef("%w", err)
	}
	argv := append([]string{cl.Path}, cl.Args...)
	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Plan      netsetup.Plan `json:"plan"`
			Argv      []string      `json:"argv"`
			QMPSocket string        `json:"qmp_socket"`
			QEMUUser  string        `json:"qemu_user"`
		}{plan, argv, sock, conf.describe()})
	}
	fmt.Fprintf(out, "network: %s", plan.Mode)
	if plan.Parent != "" {
		fmt.Fprintf(out, " on %s", plan.Parent)
	}
	if plan.Passt != "" {
		fmt.Fprintf(out, " through passt (%s)", plan.Passt)
	}
	if plan.MAC != nil {
		fmt.Fprintf(out, ", guest MAC %s", plan.MAC)
	}
	fmt.Fprintf(out, "\n  why: %s\n", plan.Reason)
	fmt.Fprintf(out, "QMP socket: %s (the listening socket is passed to QEMU as an fd)\n", sock)
	fmt.Fprintf(out, "QEMU runs as: %s\n", conf.describe())
	fmt.Fprintf(out, "QEMU command (fds 3 and up are passed by vmrun):\n%s\n", launcher.Quote(argv))
	return nil
}
