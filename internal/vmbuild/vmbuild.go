// Package vmbuild turns a run's resolved options into the VM vmrun boots:
// the QEMU binary, the accelerator, the console and QEMU's confinement
// (Configure), the notices the run starts with (Announce), where the
// serial console goes (ConsoleWriter) and the console's last lines in a
// failure report (PrintTail).
package vmbuild

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/kvmcheck"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/stamp"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// Configure turns a resolved spec into the VM to boot and how QEMU is
// confined: qemuSet says --qemu was given, detach --detach (whose console
// is none unless one was asked for, and never serial).
func Configure(spec config.Spec, qemuSet, detach bool) (config.Spec, launcher.VM, confine.QEMU, error) {
	var vm launcher.VM
	var conf confine.QEMU
	qemu, err := launcher.FindQEMU(spec.QEMU, qemuSet)
	if err != nil {
		return spec, vm, conf, err
	}
	denied, broken := kvmState(spec, qemu)
	kvm, err := launcher.ChooseAccel(spec.Accel, denied, broken)
	if err != nil {
		return spec, vm, conf, err
	}
	if len(spec.Exec) > 0 && spec.Console == "auto" {
		// The command's output owns stdout; the console goes to
		// --serial-log (and its last lines to stderr on a failure).
		spec.Console = "none"
	}
	if detach {
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
	if !kvm && launcher.KVMUsable() {
		conf.KVMDenied, conf.KVMBroken = denied, broken
	}
	vm = launcher.VM{
		Name: spec.Name, QEMU: qemu, KVM: kvm, MemMiB: spec.MemMiB, CPUs: spec.CPUs,
		Disks: spec.Disks, Snapshot: spec.Snapshot, Kernel: spec.Kernel, Initrd: spec.Initrd,
		Append: spec.Append, Console: console, ExtraArgs: spec.QEMUArgs, Shares: spec.Shares, Sandbox: conf.Sandbox,
	}
	return spec, vm, conf, nil
}

// kvmState says why QEMU could not use KVM although vmrun can open
// /dev/kvm: denied, QEMU's user may not open it (confine.KVMDenied);
// broken, KVM does not work with vmrun's CPU model (kvmcheck.Works, asked
// only when KVM would be chosen otherwise: it may start QEMU once per
// boot).
func kvmState(spec config.Spec, qemu string) (denied, broken string) {
	if denied = confine.KVMDenied(spec); denied != "" || spec.Accel == "tcg" || !launcher.KVMUsable() {
		return denied, ""
	}
	return "", kvmcheck.Works(rundir.Root(), qemu)
}

// Announce tells the user what the run will be like: the shares, and the
// accelerations it runs without.
// kvmDenied, when not "", is why QEMU's user cannot use /dev/kvm;
// kvmBroken why KVM does not work here.
func Announce(notify func(string, ...any), spec config.Spec, kvm bool, kvmDenied, kvmBroken string, plan netsetup.Plan) {
	for _, sh := range spec.Shares {
		ro := ""
		if sh.ReadOnly {
			ro = ", read-only"
		}
		notify("--share %s: virtio-9p, tag %s%s (in the guest: mount -t 9p -o trans=virtio,version=9p2000.L %s /mnt/%s)", sh.Path, sh.Tag, ro, sh.Tag, sh.Tag)
	}
	if !kvm && kvmDenied != "" {
		notify("KVM is not used: %s; using TCG software emulation, which is much slower (fix: %s)", kvmDenied, launcher.KVMDeniedFix)
	} else if !kvm && kvmBroken != "" {
		notify("%s; using TCG software emulation, which is much slower (fix: %s)", launcher.KVMBroken(kvmBroken), launcher.KVMBrokenFix)
	} else if !kvm {
		notify("KVM is not available (/dev/kvm missing or not usable): using TCG software emulation, which is much slower")
	}
	if !plan.Vhost && plan.Mode.UsesTap() {
		notify("/dev/vhost-net is missing: the guest's network runs without vhost acceleration (vhost=off)")
	}
}

// ConsoleTail is how many console lines a failure report shows.
const ConsoleTail = 20

// PrintTail writes the console's last lines to w (a failure report for a
// console that was not shown).
func PrintTail(w io.Writer, tail *linetail.Tail) {
	lines := tail.Lines()
	fmt.Fprintf(w, "vmrun: the last %d lines of the guest's serial console:\n", len(lines))
	for _, l := range lines {
		fmt.Fprintf(w, "  | %s\n", l)
	}
}

// ConsoleWriter returns where the serial console goes (w when it is the
// serial console, --serial-log) and how to close it. A destination whose
// write fails (w a pipe whose reader has gone, a full disk) is dropped from
// then on with one notice; the others keep getting everything.
func ConsoleWriter(w io.Writer, spec config.Spec, console launcher.Console, notify func(string, ...any)) (io.Writer, func() error, error) {
	var ws []io.Writer
	if console == launcher.ConsoleSerial {
		ws = append(ws, launcher.Lossy(w, func(err error) {
			also := ""
			if spec.SerialLog != "" {
				also = " (--serial-log " + spec.SerialLog + " still gets it)"
			}
			notify("the serial console could not be written to standard output (%v): the VM keeps running and its console output is dropped from here on%s; stop the VM with Ctrl-C or `vmrun stop %s`", err, also, spec.Name)
		}))
	}
	closeLog := func() error { return nil }
	if spec.SerialLog != "" {
		f, err := os.OpenFile(spec.SerialLog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, nil, exitcode.Usagef("--serial-log %s cannot be written: %w", spec.SerialLog, errors.Unwrap(err))
		}
		var log io.Writer = f
		if spec.Timestamps {
			log = stamp.NewWriter(f)
		}
		ws = append(ws, launcher.Lossy(log, func(err error) {
			notify("--serial-log %s could not be written (%v): the log ends here; the VM keeps running", spec.SerialLog, err)
		}))
		closeLog = f.Close
	}
	return io.MultiWriter(ws...), closeLog, nil
}
