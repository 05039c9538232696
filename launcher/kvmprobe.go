package launcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// KVMDeniedFix is what to do about a /dev/kvm that the user QEMU runs as
// cannot open (confine.KVMDenied).
const KVMDeniedFix = "give /dev/kvm to a group with read-write access (Debian's udev rule: root:kvm, mode 0660)"

// KVMBrokenFix is what to do about a KVM that fails ProbeKVM.
const KVMBrokenFix = "give this host a working KVM (in a VM: nested virtualization that passes on the CPU features QEMU's -cpu host needs)"

// KVMProbeArgs is how ProbeKVM starts QEMU: the machine and CPU model
// vmrun boots a VM with under KVM (machineArgs), the least memory, no
// devices, its CPUs stopped (-S) and the human monitor on stdin/stdout.
func KVMProbeArgs() []string {
	return append(machineArgs(true, true), "-m", "16M", "-smp", "1", "-nodefaults", "-no-user-config", "-S",
		"-display", "none", "-monitor", "stdio")
}

// ProbeKVM finds out whether KVM works on this host with the CPU model
// vmrun passes: it starts qemu with KVMProbeArgs and tells its monitor to
// quit. QEMU creates and resets the vCPUs, which loads -cpu host's
// registers and MSRs into KVM, before its main loop reads the monitor;
// a KVM that cannot take them (nested virtualization without the CPU
// features QEMU needs: "failed to set MSR 0x10a" and an assertion) makes
// QEMU abort there. It returns "" when QEMU quit cleanly, else QEMU's
// reason (KVMProbeResult); final is false when the answer may differ on
// the next try (QEMU could not be started, or did not quit within
// timeout), so it must not be kept.
func ProbeKVM(qemu string, timeout time.Duration) (why string, final bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, KVMProbeArgs()...)
	cmd.Stdin = strings.NewReader("quit\n")
	cmd.Stdout = io.Discard
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil && err != nil:
		return fmt.Sprintf("it did not quit within %s", timeout), false
	case err != nil && !errors.As(err, &ee):
		return fmt.Sprintf("it could not be started: %v", err), false
	}
	return KVMProbeResult(stderr.Bytes(), err), true
}

// KVMProbeResult reads how the probe's QEMU ended: "" when it quit
// cleanly (err nil), else its first line on stderr without the program
// name ("error: failed to set MSR 0x10a to 0x69"), or, when it said
// nothing, how it ended ("killed by signal aborted", "exit status 1").
func KVMProbeResult(stderr []byte, err error) string {
	if err == nil {
		return ""
	}
	for line := range strings.Lines(string(stderr)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		// "qemu-system-x86_64: error: ...": the program's name is one word.
		if prog, rest, ok := strings.Cut(line, ": "); ok && !strings.ContainsAny(prog, " \t") && rest != "" {
			line = rest
		}
		return line
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return err.Error()
}
