package main

import (
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// TestSlirpWording: --help says what QEMU's slirp is (IPv6 on by default,
// in fec0::/64 behind its NAT), not that it has no IPv6 (doctor's passt
// check: internal/hostcheck's TestPasstWording).
func TestSlirpWording(t *testing.T) {
	out, _, _ := vmrun(t, "--help")
	if strings.Contains(out, "passt when installed (faster, IPv6)") || !strings.Contains(out, "fec0::/64") {
		t.Errorf("--help on user mode:\n%s", out)
	}
}

// TestNetNoneWording: --net none has no MAC to show and no address to
// connect to.
func TestNetNoneWording(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	d := disk(t)
	out, errOut, code := vmrun(t, "--disk", d, "--net", "none", "--qemu", "/bin/true", "--console", "none", "--dry-run")
	first, _, _ := strings.Cut(out, "\n")
	if code != 0 || first != "network: none" {
		t.Errorf("dry-run --net none (exit %d): first line %q, want \"network: none\"\n%s%s", code, first, out, errOut)
	}
	out, _, _ = vmrun(t, "--disk", d, "--net", "user", "--qemu", "/bin/true", "--console", "none", "--dry-run")
	if first, _, _ := strings.Cut(out, "\n"); !strings.Contains(first, ", guest MAC 52:54:00:") {
		t.Errorf("dry-run --net user: first line %q lacks the guest MAC", first)
	}
	_, errOut, code = vmrun(t, "--disk", d, "--net", "none", "--forward", "tcp:8080:80")
	if code != exitcode.Usage || strings.Contains(errOut, "own address") || !strings.Contains(errOut, "--net none gives the guest none") {
		t.Errorf("--net none --forward (exit %d): %s", code, errOut)
	}
}
