package overlay

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/testutil"
)

// qemu runs a QEMU tool, with f (when not nil) as its fd 3
// (/proc/self/fd/3), and returns its output.
func qemu(t *testing.T, f *os.File, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testutil.RequireCmd(t, tool), args...)
	if f != nil {
		cmd.ExtraFiles = []*os.File{f}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestCreate makes overlays of several sizes and has qemu-img check them:
// a consistent image (no errors, no leaked clusters) of the size asked
// for, in a file that has no name in its directory.
func TestCreate(t *testing.T) {
	for _, size := range []uint64{512, 1 << 20, 32<<20 + 512, 5 << 30, 3 << 40} {
		dir := t.TempDir()
		f, err := Create(dir, size)
		if err != nil {
			t.Fatalf("%d: %v", size, err)
		}
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 {
			t.Errorf("%d: the overlay has %d names (%v), want none", size, st.Nlink, err)
		}
		if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
			t.Errorf("%d: %s holds %v (%v), want nothing", size, dir, ents, err)
		}
		if out := qemu(t, f, "qemu-img", "check", "-f", "qcow2", "/proc/self/fd/3"); !strings.Contains(out, "No errors were found") {
			t.Errorf("%d: qemu-img check: %s", size, out)
		}
		var info struct {
			VirtualSize uint64 `json:"virtual-size"`
			Format      string `json:"format"`
		}
		out := qemu(t, f, "qemu-img", "info", "--output=json", "-f", "qcow2", "/proc/self/fd/3")
		if err := json.Unmarshal([]byte(out), &info); err != nil || info.VirtualSize != size || info.Format != "qcow2" {
			t.Errorf("%d: qemu-img info: %+v (%v)\n%s", size, info, err, out)
		}
	}
}

// TestOverlayOfImage uses an overlay as --snapshot's drive is set up (the
// image its backing, named in the options): reads show the image, writes
// land in the overlay (which stays consistent), the image is unchanged.
func TestOverlayOfImage(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	qemu(t, nil, "qemu-img", "create", "-q", "-f", "qcow2", base, "1M")
	qemu(t, nil, "qemu-io", "-f", "qcow2", base, "-c", "write -q -P 0x11 0 1M")
	f, err := Create(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	drive := "driver=qcow2,file.filename=/proc/self/fd/3,backing.driver=qcow2,backing.file.filename=" + base
	out := qemu(t, f, "qemu-io", "--image-opts", drive,
		"-c", "read -q -P 0x11 0 1M", "-c", "write -q -P 0x22 64k 4k", "-c", "read -q -P 0x22 64k 4k",
		"-c", "read -q -P 0x11 0 64k", "-c", "read -q -P 0x11 68k 956k")
	if strings.Contains(out, "Pattern verification failed") {
		t.Errorf("through the overlay: %s", out)
	}
	if out := qemu(t, nil, "qemu-io", "-r", "-f", "qcow2", base, "-c", "read -q -P 0x11 0 1M"); strings.Contains(out, "Pattern verification failed") {
		t.Errorf("the image changed: %s", out)
	}
	if out := qemu(t, f, "qemu-img", "check", "-f", "qcow2", "/proc/self/fd/3"); !strings.Contains(out, "No errors were found") {
		t.Errorf("qemu-img check after a write: %s", out)
	}
}

func TestCreateRefused(t *testing.T) {
	if _, err := Create(t.TempDir(), 0); err == nil {
		t.Error("a 0-byte overlay was made")
	}
	if _, err := Create(filepath.Join(t.TempDir(), "missing"), 1<<20); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("in a missing directory: %v", err)
	}
}
