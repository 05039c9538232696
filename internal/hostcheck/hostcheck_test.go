package hostcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/hostsetup"
)

// TestPasstWording: without passt, doctor says what QEMU's slirp is (IPv6
// on by default, in fec0::/64 behind its NAT), not that it has no IPv6.
func TestPasstWording(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no passt
	c := checkPasst()
	if c.Status != StatusWarn || strings.Contains(c.Summary, "no IPv6") || !strings.Contains(c.Summary, "fec0::/64") {
		t.Errorf("doctor without passt: %+v", c)
	}
}

func TestQEMUVersionCheck(t *testing.T) {
	for out, want := range map[string]string{
		"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)\n": StatusOK,
		"QEMU emulator version 8.0.0\n":                        StatusOK,
		"QEMU emulator version 6.2.0\n":                        StatusWarn,
		"QEMU emulator version 7.1.0\n":                        StatusWarn,
		"garbage":                                              StatusWarn,
	} {
		if c := qemuVersionCheck("/q", out); c.Status != want {
			t.Errorf("%q: %+v", out, c)
		}
	}
}

func TestNetworkManagerCheck(t *testing.T) {
	if c := checkNetworkManager(filepath.Join(t.TempDir(), "none")); c.Status != StatusOK {
		t.Errorf("no NetworkManager: %+v", c)
	}
	dir := t.TempDir()
	if c := checkNetworkManager(dir); c.Status != StatusWarn || !strings.Contains(c.Fix, "vmrun setup") {
		t.Errorf("NetworkManager without the drop-in: %+v", c)
	}
	p, err := hostsetup.WriteNMDropIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c := checkNetworkManager(dir); c.Status != StatusOK || !strings.Contains(c.Summary, p) {
		t.Errorf("with the drop-in: %+v", c)
	}
}

func TestRuntimeDirCheck(t *testing.T) {
	d := t.TempDir()
	if c := checkRuntimeDir(d); c.Status != StatusOK {
		t.Errorf("%+v", c)
	}
	if c := checkRuntimeDir(filepath.Join(d, "new")); c.Status != StatusOK {
		t.Errorf("creatable: %+v", c)
	}
	f := filepath.Join(d, "file")
	_ = os.WriteFile(f, nil, 0o644)
	if c := checkRuntimeDir(f); c.Status != StatusFail {
		t.Errorf("a file: %+v", c)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if c := checkRuntimeDir(d); c.Status != StatusWarn {
		t.Errorf("world-writable: %+v", c)
	}
}
