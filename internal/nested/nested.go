// Package nested boots the nested-kernel test rig (layer 4 of TESTING.md):
// Debian's kernel under QEMU with the kernel modules the host lacks
// (cfg80211/mac80211/mac80211_hwsim, ipvlan/ipvtap, vhost_net, ...), so that
// tests for Wi-Fi, ipvtap and vhost-net run on any machine.
//
// test/nested/build.sh (`make nested`) builds the kernel and a base
// initramfs. Run appends a per-test payload (a shell script and files, e.g.
// a static Go test binary made by BuildTest) as a second cpio archive, boots
// the rig, and returns the serial console and the script's exit status:
//
//	bin := nested.BuildTest(t, "github.com/vmrun/vmrun/netsetup")
//	r := nested.Run(t, nested.Payload{
//		Files:  []nested.File{{Src: bin, Dst: "/payload/netsetup.test"}},
//		Script: "modprobe ipvtap && /payload/netsetup.test -test.run TestIpvtap -test.v",
//	})
//	if r.Status != 0 { t.Fatal("in the rig: failed") }
//
// Inside the rig: busybox (its shell prefers its own applets, so call
// iproute2 as /usr/sbin/ip; busybox modprobe loads several modules only with
// -a), iw, hostapd, wpa_supplicant, wpa_cli, dnsmasq, qemu-system-x86_64,
// udhcpc with a default script, /run/netns, and VMRUN_RIG=1 in the
// environment. ipvlan, ipvtap, vhost_net and the Wi-Fi modules are not
// loaded at boot: a test loads them (or tests their absence).
package nested

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
)

// Defaults for a Payload's zero fields.
const (
	DefaultMemMiB  = 2048            // the rig's memory
	DefaultTimeout = 5 * time.Minute // for a whole boot
)

// poweroffGrace is how long Run lets the rig power off after RIG-EXIT.
const poweroffGrace = 5 * time.Second

// Markers the rig's /init prints on the serial console.
const (
	markerUp   = "RIG: up"
	markerExit = "RIG-EXIT="
	// markerQEMU is written into the output by Run when QEMU exits.
	markerQEMU = "nested: qemu exited:"
)

// Rig is a built rig: a kernel and the base initramfs.
type Rig struct {
	Dir       string // the build directory
	Kernel    string // vmlinux: boots ~2.5 s faster than vmlinuz under TCG (PVH)
	Initramfs string // rig.cpio: the base initramfs (uncompressed newc)
}

// Dir returns the directory test/nested/build.sh writes to:
// $VMRUN_NESTED_DIR, else $XDG_CACHE_HOME/vmrun/nested, else
// ~/.cache/vmrun/nested.
func Dir() string {
	if d := os.Getenv("VMRUN_NESTED_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "vmrun", "nested")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "vmrun", "nested")
}

// Find returns the rig in Dir, or an error for which errors.Is(err,
// os.ErrNotExist) holds when it has not been built.
func Find() (Rig, error) {
	d := Dir()
	r := Rig{Dir: d, Kernel: filepath.Join(d, "vmlinux"), Initramfs: filepath.Join(d, "rig.cpio")}
	for _, p := range []string{r.Kernel, r.Initramfs, filepath.Join(d, ".stamp")} {
		if _, err := os.Stat(p); err != nil {
			return Rig{}, fmt.Errorf("nested rig not built: %w", err)
		}
	}
	return r, nil
}

// Require returns the rig, or skips the test (fails it under CI) when QEMU
// is missing or the rig has not been built.
func Require(t testing.TB) Rig {
	t.Helper()
	testutil.RequireQEMU(t)
	r, err := Find()
	if err != nil {
		testutil.Skipf(t, "%v: run `make nested` (test/nested/build.sh)", err)
	}
	return r
}

// Inside reports whether the caller runs inside the rig (its /init exports
// VMRUN_RIG=1). Tests meant for the rig only skip outside it.
func Inside() bool { return os.Getenv("VMRUN_RIG") == "1" }

// File is a host file to put into the rig.
type File struct {
	Src  string      // path on the host
	Dst  string      // absolute path in the rig, e.g. /payload/vmrun
	Mode os.FileMode // permission bits; 0 keeps Src's
}

// Payload is what one boot of the rig runs.
type Payload struct {
	// Script is the body of /payload/run.sh, run by busybox sh in /payload
	// as root after the rig is up; its exit status becomes Result.Status.
	Script  string
	Files   []File        // extra files (their directories are created)
	MemMiB  int           // guest memory; 0 means DefaultMemMiB
	Timeout time.Duration // for the whole boot; 0 means DefaultTimeout
}

// Result is the outcome of one boot.
type Result struct {
	Output  string        // the serial console, without carriage returns
	Status  int           // exit status of run.sh (RIG-EXIT=<n>)
	Boot    time.Duration // from QEMU's start to "RIG: up"
	Elapsed time.Duration // from QEMU's start to RIG-EXIT
}

// Match returns the submatches of the first match of the regular
// expression in the output, or nil.
func (r *Result) Match(pattern string) []string {
	return regexp.MustCompile(pattern).FindStringSubmatch(r.Output)
}

// Run boots the rig with the payload and waits for run.sh to finish. It
// fails the test when the rig cannot boot, panics, or runs past the timeout
// (QEMU is killed then); the caller checks Result.Status. The console is
// logged with t.Log at the end.
func Run(t testing.TB, p Payload) *Result {
	t.Helper()
	rig := Require(t)
	qemu := testutil.RequireQEMU(t)
	if p.MemMiB == 0 {
		p.MemMiB = DefaultMemMiB
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := writeInitrd(initrd, rig.Initramfs, p); err != nil {
		t.Fatalf("nested: %v", err)
	}
	r, err := boot(qemu, Args(rig.Kernel, initrd, p.MemMiB), p.Timeout)
	if r.Output != "" {
		t.Logf("nested rig console:\n%s", r.Output)
	}
	if err != nil {
		t.Fatalf("nested: %v", err)
	}
	t.Logf("nested rig: boot %.1fs, run.sh exited %d after %.1fs", r.Boot.Seconds(), r.Status, r.Elapsed.Seconds())
	return r
}

// Args returns QEMU's arguments for booting kernel with initrd: q35 under
// TCG, the serial console on stdio, and no reboot (a panic, panic=-1, or a
// poweroff ends QEMU).
func Args(kernel, initrd string, memMiB int) []string {
	return []string{
		"-machine", "q35,accel=tcg", "-cpu", "max",
		"-m", strconv.Itoa(memMiB), "-smp", "2",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot", "-device", "pvpanic",
		"-kernel", kernel, "-initrd", initrd,
		// no_timer_check: on a loaded host TCG can miss the kernel's early
		// IO-APIC timer check ("IO-APIC + timer doesn't work!" panic).
		"-append", "console=ttyS0 panic=-1 quiet no_timer_check",
	}
}

// writeInitrd writes the base initramfs followed by the payload archive;
// the kernel unpacks concatenated archives, each starting 4-byte aligned.
func writeInitrd(dst, base string, p Payload) (err error) {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	in, err := os.Open(base)
	if err != nil {
		return err
	}
	defer in.Close()
	n, err := io.Copy(out, in)
	if err != nil {
		return fmt.Errorf("copy %s: %w", base, err)
	}
	if r := n % 4; r != 0 {
		if _, err := out.Write(make([]byte, 4-r)); err != nil {
			return err
		}
	}
	return writePayload(out, p.Script, p.Files)
}

// boot runs QEMU and waits for RIG-EXIT, QEMU's exit, or the timeout; QEMU
// (its own process group) is dead when boot returns.
func boot(qemu string, args []string, timeout time.Duration) (*Result, error) {
	out := testutil.NewLineBuffer()
	cmd := exec.Command(qemu, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return &Result{}, fmt.Errorf("start %s: %w", qemu, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(out, "\n%s %v\n", markerQEMU, err)
		close(exited)
	}()
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	r := &Result{}
	upc := make(chan time.Duration, 1)
	go func() { // ends at the latest when QEMU exits
		m, _ := out.WaitFor(`(?m)^(?:`+regexp.QuoteMeta(markerUp)+`|`+markerQEMU+`)`, timeout)
		if m != nil && strings.HasPrefix(m[0], markerUp) {
			upc <- time.Since(start)
		}
		close(upc)
	}()
	m, err := out.WaitFor(`(?m)^(?:`+markerExit+`(\d+)|`+markerQEMU+`.*)`, timeout)
	r.Elapsed = time.Since(start)
	if err != nil {
		kill()
	} else {
		// run.sh is done; /init powers off within a second.
		select {
		case <-exited:
		case <-time.After(poweroffGrace):
			kill()
		}
	}
	<-exited
	r.Boot = <-upc
	r.Output = strings.ReplaceAll(out.String(), "\r", "")
	switch {
	case err != nil:
		return r, fmt.Errorf("rig killed after %s without %s (timeout)", timeout, markerExit)
	case m[1] == "":
		why := "no " + markerExit
		if p := regexp.MustCompile(`Kernel panic[^\n]*`).FindString(r.Output); p != "" {
			why = p
		}
		return r, fmt.Errorf("rig ended early (%s): %s", why, strings.TrimSpace(m[0]))
	}
	r.Status, _ = strconv.Atoi(m[1])
	return r, nil
}
