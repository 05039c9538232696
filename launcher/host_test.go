package launcher

import (
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
)

// TestHostChoices: a choice the user made that cannot work is a usage
// error, what the host lacks a set-up failure, and --console auto without
// a display is the serial console.
func TestHostChoices(t *testing.T) {
	if _, err := FindQEMU("/nonexistent/qemu", true); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("--qemu missing: %v", err)
	}
	if _, err := FindQEMU("nonexistent-qemu-system", false); exitcode.Of(err) != exitcode.Setup {
		t.Errorf("default QEMU missing: %v", err)
	}
	if kvm, err := ChooseAccel("tcg", "", ""); kvm || err != nil {
		t.Errorf("--accel tcg: %v, %v", kvm, err)
	}
	if kvm, err := ChooseAccel("auto", "", ""); kvm != KVMUsable() || err != nil {
		t.Errorf("--accel auto: %v, %v", kvm, err)
	}
	if _, err := ChooseAccel("kvm", "", ""); (err == nil) != KVMUsable() || err != nil && exitcode.Of(err) != exitcode.Setup {
		t.Errorf("--accel kvm: %v (KVM usable: %v)", err, KVMUsable())
	}
	// QEMU's user cannot open /dev/kvm: TCG, and --accel kvm says why.
	if kvm, err := ChooseAccel("auto", "denied for test", ""); kvm || err != nil {
		t.Errorf("--accel auto, /dev/kvm denied to QEMU's user: %v, %v", kvm, err)
	}
	if _, err := ChooseAccel("kvm", "denied for test", ""); err == nil || exitcode.Of(err) != exitcode.Setup ||
		KVMUsable() && !strings.Contains(err.Error(), "denied for test") {
		t.Errorf("--accel kvm, /dev/kvm denied to QEMU's user: %v", err)
	}
	// KVM does not work (ProbeKVM): TCG, and --accel kvm says why.
	const msr = "error: failed to set MSR 0x10a to 0x69"
	if kvm, err := ChooseAccel("auto", "", msr); kvm || err != nil {
		t.Errorf("--accel auto, KVM broken: %v, %v", kvm, err)
	}
	if _, err := ChooseAccel("kvm", "", msr); err == nil || exitcode.Of(err) != exitcode.Setup ||
		KVMUsable() && !strings.Contains(err.Error(), "/dev/kvm is present but KVM does not work here (QEMU: "+msr+")") {
		t.Errorf("--accel kvm, KVM broken: %v", err)
	}
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	for choice, want := range map[string]Console{"auto": ConsoleSerial, "serial": ConsoleSerial, "none": ConsoleNone} {
		if c, err := ChooseConsole(choice, "/nonexistent/qemu"); c != want || err != nil {
			t.Errorf("--console %s: %q, %v", choice, c, err)
		}
	}
	if _, err := ChooseConsole("gui", "/nonexistent/qemu"); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("--console gui without a display: %v", err)
	}
}
