package launcher

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/qemuprobe"
)

// What this host offers QEMU, decided once per run before anything is
// created: the binary, the accelerator, the console. Their errors carry
// vmrun's exit codes: a choice the user made that cannot work is a usage
// error, what the host lacks a set-up failure.

// FindQEMU resolves the QEMU binary. A missing binary the user named is a
// usage error; a missing default QEMU is a set-up problem of the host.
func FindQEMU(name string, explicit bool) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if explicit {
		return "", exitcode.Usagef("--qemu %s: no such executable; give the path of qemu-system-x86_64", name)
	}
	return "", exitcode.Setupf("QEMU (%s) is not installed: install it with `apt-get install qemu-system-x86`, or give its path with --qemu", name)
}

// ChooseAccel decides between KVM (true) and TCG for --accel auto, kvm or
// tcg. denied, when not "", says why QEMU could not open /dev/kvm although
// vmrun can (it runs QEMU as another user: confine.KVMDenied); broken,
// when not "", why KVM does not work although /dev/kvm opens (QEMU's
// words from ProbeKVM).
func ChooseAccel(accel, denied, broken string) (bool, error) {
	usable := KVMUsable() && denied == "" && broken == ""
	switch accel {
	case "kvm":
		if denied != "" && KVMUsable() {
			return false, exitcode.Setupf("--accel kvm: %s; %s, or use --accel tcg", denied, KVMDeniedFix)
		}
		if broken != "" && KVMUsable() {
			return false, exitcode.Setupf("--accel kvm: %s; %s, or use --accel tcg", KVMBroken(broken), KVMBrokenFix)
		}
		if !usable {
			return false, exitcode.Setupf("--accel kvm: /dev/kvm is missing or not usable by you; enable virtualization (and add yourself to group kvm), or use --accel tcg")
		}
		return true, nil
	case "tcg":
		return false, nil
	}
	return usable, nil
}

// KVMBroken says that KVM does not work, and QEMU's reason (ProbeKVM).
func KVMBroken(why string) string {
	return fmt.Sprintf("/dev/kvm is present but KVM does not work here (QEMU: %s)", why)
}

// KVMUsable reports whether /dev/kvm can be opened for reading and writing.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// ChooseConsole resolves --console auto: a window when a display is
// available and QEMU can draw one, otherwise the serial console.
func ChooseConsole(choice, qemu string) (Console, error) {
	switch choice {
	case "serial":
		return ConsoleSerial, nil
	case "none":
		return ConsoleNone, nil
	case "gui":
		if !hasDisplay() {
			return "", exitcode.Usagef("--console gui: no display (DISPLAY and WAYLAND_DISPLAY are unset); use --console serial")
		}
		if !qemuprobe.GUI(qemu) {
			return "", exitcode.Setupf("--console gui: %s has no GTK or SDL display; install qemu-system-gui, or use --console serial", qemu)
		}
		return ConsoleGUI, nil
	}
	if hasDisplay() && qemuprobe.GUI(qemu) {
		return ConsoleGUI, nil
	}
	return ConsoleSerial, nil
}

func hasDisplay() bool {
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}
