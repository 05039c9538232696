package launcher

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestKVMProbeResult reads QEMU's ends captured on real hosts.
func TestKVMProbeResult(t *testing.T) {
	abort := exitErr(t, "kill -ABRT $$")
	for _, c := range []struct {
		name, stderr string
		err          error
		want         string
	}{
		{"quit", "", nil, ""},
		// Nested KVM without the CPU features -cpu host needs (this
		// project's CI machine: QEMU 7.2, Debian 12).
		{"msr", "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n" +
			"qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n",
			abort, "error: failed to set MSR 0x10a to 0x69"},
		// QEMU as a user who may not open /dev/kvm.
		{"denied", "Could not access KVM kernel module: Permission denied\nqemu-system-x86_64: failed to initialize kvm: Permission denied\n",
			exitErr(t, "exit 1"), "Could not access KVM kernel module: Permission denied"},
		// -machine none with -cpu host.
		{"apic", "qemu-system-x86_64: apic-id property was not initialized properly\n", exitErr(t, "exit 1"),
			"apic-id property was not initialized properly"},
		{"silent abort", "", abort, "killed by signal aborted"},
		{"silent exit", "", exitErr(t, "exit 3"), "exit status 3"},
	} {
		if got := KVMProbeResult([]byte(c.stderr), c.err); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// exitErr returns the error of sh -c script.
func exitErr(t *testing.T, script string) error {
	t.Helper()
	err := exec.Command("sh", "-c", script).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("sh -c %q: %v", script, err)
	}
	return err
}

// TestProbeKVMFakeQEMU runs ProbeKVM against scripts in QEMU's place: one
// that quits when its monitor says so, one that aborts as QEMU does on a
// broken nested KVM, one that never quits. The real QEMU is probed by the
// end-to-end tests (TestQEMUPrivileged, TestAccelKVMProbe).
func TestProbeKVMFakeQEMU(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The probe's arguments reach QEMU as given; the monitor gets "quit".
	quits := script("quits", `[ "$*" = "`+strings.Join(KVMProbeArgs(), " ")+`" ] || { echo "$0: args: $*" >&2; exit 1; }
read cmd; [ "$cmd" = quit ] || { echo "$0: monitor got $cmd" >&2; exit 1; }
`)
	if why, final := ProbeKVM(quits, 10*time.Second); why != "" || !final {
		t.Errorf("a QEMU that quits: %q, final %v", why, final)
	}
	aborts := script("aborts", `echo "$0: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$`)
	if why, final := ProbeKVM(aborts, 10*time.Second); why != "error: failed to set MSR 0x10a to 0x69" || !final {
		t.Errorf("a QEMU that aborts: %q, final %v", why, final)
	}
	hangs := script("hangs", "exec sleep 60\n")
	start := time.Now()
	if why, final := ProbeKVM(hangs, 200*time.Millisecond); !strings.Contains(why, "did not quit within 200ms") || final {
		t.Errorf("a QEMU that never quits: %q, final %v", why, final)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a QEMU that never quits held the probe for %s", d)
	}
	if why, final := ProbeKVM(filepath.Join(dir, "missing"), 10*time.Second); why == "" || final {
		t.Errorf("no QEMU: %q, final %v", why, final)
	}
}

// TestKVMProbeArgsMatchBuild: the probe starts QEMU with the -machine and
// -cpu a KVM VM boots with.
func TestKVMProbeArgsMatchBuild(t *testing.T) {
	vm := base(t)
	vm.KVM = true
	cl, err := Build(vm)
	if err != nil {
		t.Fatal(err)
	}
	probe := KVMProbeArgs()
	for _, opt := range []string{"-machine", "-cpu"} {
		i, j := slices.Index(cl.Args, opt), slices.Index(probe, opt)
		if i < 0 || j < 0 || cl.Args[i+1] != probe[j+1] {
			t.Errorf("%s: VM %q, probe %q", opt, cl.Args, probe)
		}
	}
}
