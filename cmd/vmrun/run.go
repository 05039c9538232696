package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/internal/detach"
	"github.com/vmrun/vmrun/internal/dryrun"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/stamp"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// runAction boots a VM: validate, plan the network, then run a session
// that creates the runtime directory and links, starts and supervises
// QEMU, and undoes everything.
func runAction(c *cli.Context) error {
	if c.Bool("detach") && !c.Bool("dry-run") && !detach.IsSupervisor() {
		return startDetached(c)
	}
	sup, err := detach.FromEnv()
	if err != nil {
		return exitcode.Usagef("%w", err)
	}
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

	spec, vm, conf, err := configure(c, notify)
	if err != nil {
		return err
	}
	step("configuration checked; QEMU will run as %s", conf.Describe())
	plan, err := netplan.Plan(c.Context, planRequest(spec))
	if err != nil {
		return err
	}
	if plan.Notice != "" {
		notify("%s", plan.Notice)
	}
	step("network plan: %s (%s)", plan.Mode, plan.Reason)
	fwd, err := sshForward(spec, &plan)
	if err != nil {
		return err
	}
	root := rundir.Root()
	plan.RuntimeRoot = root
	if c.Bool("dry-run") {
		return dryrun.Print(c.App.Writer, c.Bool("json"), root, spec, vm, plan, conf)
	}
	if conf.NoSandbox != "" {
		notify("%s", conf.NoSandbox)
	}
	closeFiles, err := conf.OpenFiles(spec, &vm)
	if err != nil {
		return err
	}
	defer closeFiles()
	announce(notify, spec, vm.KVM, plan)
	s := &session{c: c, spec: spec, vm: vm, plan: plan, conf: conf, root: root, sigc: sigc, notify: notify, step: step,
		gotAddr: make(chan struct{}), sshForward: fwd}
	if sup != nil {
		s.det = &detached{Supervisor: sup}
	}
	return s.run()
}

// configure resolves the options into the VM to boot and how QEMU is
// confined.
func configure(c *cli.Context, notify func(string, ...any)) (config.Spec, launcher.VM, confine.QEMU, error) {
	var vm launcher.VM
	var conf confine.QEMU
	spec, err := resolve(c)
	if err != nil {
		return spec, vm, conf, err
	}
	qemu, err := launcher.FindQEMU(spec.QEMU, c.IsSet("qemu"))
	if err != nil {
		return spec, vm, conf, err
	}
	kvm, err := launcher.ChooseAccel(spec.Accel)
	if err != nil {
		return spec, vm, conf, err
	}
	if len(spec.Exec) > 0 && spec.Console == "auto" {
		// The command's output owns stdout; the console goes to
		// --serial-log (and its last lines to stderr on a failure).
		spec.Console = "none"
	}
	if c.Bool("detach") {
		if spec.Console == "serial" {
			return spec, vm, conf, exitcode.Usagef("--detach --console serial: a detached VM's serial console is reached with `vmrun console NAME` and `vmrun logs NAME`; leave out --console")
		}
		if spec.Console == "auto" {
			spec.Console = "none"
		}
	}
	console, err := launcher.ChooseConsole(spec.Console, qemu)
	if err != nil {
		return spec, vm, conf, err
	}
	if conf, err = confine.Choose(spec, qemu, kvm); err != nil {
		return spec, vm, conf, err
	}
	vm = launcher.VM{
		Name: spec.Name, QEMU: qemu, KVM: kvm, MemMiB: spec.MemMiB, CPUs: spec.CPUs,
		Disks: spec.Disks, Snapshot: spec.Snapshot, Kernel: spec.Kernel, Initrd: spec.Initrd,
		Append: spec.Append, Console: console, ExtraArgs: spec.QEMUArgs, Shares: spec.Shares, Sandbox: conf.Sandbox,
	}
	return spec, vm, conf, nil
}

// announce tells the user what the run will be like: the shares, and the
// accelerations it runs without.
func announce(notify func(string, ...any), spec config.Spec, kvm bool, plan netsetup.Plan) {
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
			ws = append(ws, stamp.NewWriter(f))
		} else {
			ws = append(ws, f)
		}
		closeLog = f.Close
	}
	return io.MultiWriter(ws...), closeLog, nil
}
