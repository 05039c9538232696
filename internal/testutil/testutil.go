// Package testutil holds helpers for vmrun's tests that need root, real
// network namespaces, QEMU and the test guest images. Under CI (CI=true) or
// with VMRUN_STRICT=1, a test that cannot run fails instead of skipping.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// Strict reports whether missing prerequisites must fail tests (CI=true or
// VMRUN_STRICT=1) instead of skipping them.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("VMRUN_STRICT") == "1"
}

// Skipf skips the test, or fails it under Strict.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("cannot run (and CI forbids skipping): "+format, args...)
	}
	t.Skipf(format, args...)
}

// SkipElsewhere skips a test that cannot run on this machine because
// another test runs it where it can: by names that test as
// "package-directory.TestName" (e.g. "test/wifi.TestWiFi"), and that test
// must run it strictly and check that it ran (TestNoBareSkip checks that
// the named test exists). It skips under Strict too, except inside the
// nested rig (VMRUN_RIG=1), which is the "elsewhere" of every such test:
// there it fails under Strict, as Skipf does.
func SkipElsewhere(t testing.TB, by, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (covered by " + by + ")"
	if Strict() && os.Getenv("VMRUN_RIG") == "1" {
		t.Fatalf("cannot run inside the rig (and CI forbids skipping): %s", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips (or fails under Strict) unless running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root (run `sudo make test`)")
	}
}

// RequireCmd returns the path of a command, or skips (fails under Strict).
func RequireCmd(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skipf(t, "needs %s in PATH (run `make test-deps`)", name)
	}
	return p
}

// RequireQEMU returns the path of qemu-system-x86_64, or skips.
func RequireQEMU(t testing.TB) string {
	t.Helper()
	return RequireCmd(t, "qemu-system-x86_64")
}

// GuestImages are the test guest files built by test/guest/build.sh.
type GuestImages struct {
	Dir    string
	Kernel string // vmlinuz
	Initrd string // initramfs of the test guest
	Test   string // test.qcow2: DHCP, marker, ping, TCP 80, powers off on ACPI button
	Panic  string // panic.qcow2: panics after boot
	Demo   string // demo.qcow2: shows address and reachability, then powers off
	SSH    string // ssh.qcow2: applies a NoCloud seed (stand-in), DHCP, TCP 80, dropbear on TCP 22
}

// GuestDir returns the directory test/guest/build.sh writes to.
func GuestDir() string {
	if d := os.Getenv("VMRUN_GUEST_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "vmrun", "guest")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "vmrun", "guest")
}

// RequireGuest returns the test guest images, or skips when they have not
// been built (run `make guest`).
func RequireGuest(t testing.TB) GuestImages {
	t.Helper()
	d := GuestDir()
	g := GuestImages{
		Dir:    d,
		Kernel: filepath.Join(d, "vmlinuz"),
		Initrd: filepath.Join(d, "initrd.img"),
		Test:   filepath.Join(d, "test.qcow2"),
		Panic:  filepath.Join(d, "panic.qcow2"),
		Demo:   filepath.Join(d, "demo.qcow2"),
		SSH:    filepath.Join(d, "ssh.qcow2"),
	}
	for _, p := range []string{g.Kernel, g.Initrd, g.Test, g.Panic, g.Demo, g.SSH} {
		if _, err := os.Stat(p); err != nil {
			Skipf(t, "test guest %s is missing: run `make guest` (%v)", p, err)
		}
	}
	return g
}

// counter makes Unique names distinct within one test process.
var counter atomic.Int64

// Unique returns "prefix-PID-N", unique within this machine for the
// lifetime of the process. Keep prefix short: link names have 15 bytes.
func Unique(prefix string) string {
	n := counter.Add(1)
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid()%100000, n)
}
