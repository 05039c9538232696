package confine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/privdrop"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/launcher"
)

// qemuImg runs qemu-img with args in dir.
func qemuImg(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(testutil.RequireCmd(t, "qemu-img"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// nobody is a confined QEMU user that is not the sudo user: vmrun opens
// files with its own rights and only checks that QEMU's user can read them.
var nobody = privdrop.User{Name: "nobody", UID: privdrop.Nobody, GID: privdrop.Nobody, From: privdrop.FromNobody}

// TestOpenFilesBackingChain: a confined QEMU gets the image (read-only and,
// without --snapshot, read-write) and every file of its backing chain,
// nearest first, each with its format (recorded, or sniffed when the
// overlay does not record it).
func TestOpenFilesBackingChain(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-f", "raw", "base.img", "1M")
	qemuImg(t, dir, "create", "-f", "qcow2", "-b", "base.img", "-F", "raw", "mid.qcow2")
	qemuImg(t, dir, "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2")
	for _, snapshot := range []bool{false, true} {
		spec := config.Spec{Snapshot: snapshot}
		vm := launcher.VM{Disks: []launcher.Disk{{Path: filepath.Join(dir, "top.qcow2"), Format: config.FormatQcow2}}}
		closeAll, err := QEMU{User: &nobody}.OpenFiles(spec, &vm)
		if err != nil {
			t.Fatal(err)
		}
		files := vm.Disks[0].Files
		if want := map[bool]int{false: 2, true: 1}[snapshot]; files == nil || len(files.Image) != want {
			t.Fatalf("snapshot %v: image files %+v, want %d", snapshot, files, want)
		}
		var got []string
		for _, b := range files.Backing {
			got = append(got, filepath.Base(b.Path)+":"+b.Format)
		}
		if strings.Join(got, " ") != "mid.qcow2:qcow2 base.img:raw" {
			t.Errorf("backing chain %q", got)
		}
		closeAll()
		if _, err := files.Image[0].Stat(); err == nil {
			t.Error("closeAll left the image open")
		}
	}
}

// TestOverlays: with --snapshot every QEMU, confined or not, gets each
// disk's overlay, read-only and read-write, the size of the disk as the
// guest sees it (a qcow2 image's virtual size, a raw image's length), in a
// file with no name; a directory vmrun cannot make it in is a usage error
// naming it and the fix.
func TestOverlays(t *testing.T) {
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-f", "qcow2", "a.qcow2", "3M")
	if err := os.WriteFile(filepath.Join(dir, "b.img"), make([]byte, 5*512), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", dir)
	spec := config.Spec{Snapshot: true}
	disks := func() []launcher.Disk {
		return []launcher.Disk{{Path: filepath.Join(dir, "a.qcow2"), Format: config.FormatQcow2}, {Path: filepath.Join(dir, "b.img"), Format: config.FormatRaw}}
	}
	vm := launcher.VM{Disks: disks()}
	closeAll, err := QEMU{}.OpenFiles(spec, &vm)
	if err != nil {
		t.Fatal(err)
	}
	for i, size := range []uint64{3 << 20, 5 * 512} {
		ov := vm.Disks[i].Overlay
		if len(ov) != 2 {
			t.Fatalf("disk %d: overlay files %v, want read-only and read-write", i, ov)
		}
		for j, mode := range []int{unix.O_RDONLY, unix.O_RDWR} {
			if fl, err := unix.FcntlInt(ov[j].Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_ACCMODE != mode {
				t.Errorf("disk %d: overlay file %d has flags %#o (%v), want access mode %#o", i, j, fl, err, mode)
			}
		}
		if h, err := config.ReadQcow2Header(ov[0]); err != nil || h.Size != size || h.Backing != "" {
			t.Errorf("disk %d: overlay header %+v (%v), want a qcow2 of %d bytes naming no backing file", i, h, err, size)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%s holds %v, want the two images only", dir, ents)
	}
	closeAll()
	if _, err := vm.Disks[0].Overlay[1].Stat(); err == nil {
		t.Error("closeAll left an overlay open")
	}
	missing := filepath.Join(dir, "missing")
	t.Setenv("TMPDIR", missing)
	vm = launcher.VM{Disks: disks()}
	if _, err := (QEMU{}).OpenFiles(spec, &vm); exitcode.Of(err) != exitcode.Usage || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "set TMPDIR") {
		t.Errorf("overlay in a missing directory: %v", err)
	}
}

// TestBackingChainRefused: a loop of backing files ends at the depth bound
// and a backing file in a format QEMU would have to probe is refused, each
// as a usage error naming the image and the fix.
func TestBackingChainRefused(t *testing.T) {
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-f", "qcow2", "a.qcow2", "1M")
	qemuImg(t, dir, "create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2")
	qemuImg(t, dir, "rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2")
	qemuImg(t, dir, "create", "-f", "vpc", "v.vhd", "1M")
	qemuImg(t, dir, "create", "-f", "qcow2", "-b", "v.vhd", "-F", "vpc", "c.qcow2")
	for img, msg := range map[string]string{
		"a.qcow2": "chain depth 33",
		"c.qcow2": "is in vpc format",
	} {
		p := filepath.Join(dir, img)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var opened []*os.File
		open := func(p string, flag int) (*os.File, error) { return os.OpenFile(p, flag, 0) }
		_, err = backingChain(p, f, open, &opened)
		if exitcode.Of(err) != exitcode.Usage || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want a usage error with %q", img, err, msg)
		}
		for _, o := range append(opened, f) {
			o.Close()
		}
	}
}

func TestSniffFormat(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		config.FormatQcow2: "QFI\xfb\x00\x00\x00\x03",
		config.FormatRaw:   "\x00\x00",
		"empty":            "",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		want := name
		if name == "empty" {
			want = config.FormatRaw
		}
		if got := sniffFormat(f); got != want {
			t.Errorf("%s: sniffed %s", name, got)
		}
		f.Close()
	}
}

// TestUnconfined: --qemu-privileged confines nothing and opens nothing:
// QEMU opens its files by path.
func TestUnconfined(t *testing.T) {
	c, err := Choose(config.Spec{QEMUPrivileged: true}, "/nonexistent/qemu", false)
	if err != nil || c.User != nil || c.Sandbox {
		t.Fatalf("--qemu-privileged: %+v, %v", c, err)
	}
	vm := launcher.VM{Disks: []launcher.Disk{{Path: "/nonexistent.qcow2", Format: config.FormatQcow2}}}
	closeAll, err := c.OpenFiles(config.Spec{Kernel: "/nonexistent/vmlinuz"}, &vm)
	if err != nil || vm.Disks[0].Files != nil || vm.BootFiles != nil {
		t.Fatalf("unconfined QEMU got files: %+v %+v, %v", vm.Disks[0], vm.BootFiles, err)
	}
	closeAll()
	if !strings.Contains(c.Describe(), "with no capabilities") && !strings.Contains(c.Describe(), "--qemu-privileged: unsafe") {
		t.Errorf("Describe: %q", c.Describe())
	}
	sudo := privdrop.User{Name: "alice", UID: 4242, GID: 4242, From: privdrop.FromSudo}
	if d := (QEMU{User: &sudo}).Describe(); !strings.Contains(d, "alice") || !strings.Contains(d, "who ran sudo") {
		t.Errorf("Describe under sudo: %q", d)
	}
}

// TestKVMOpenable: QEMU's user opens /dev/kvm through the other bits, the
// group's (Choose adds the device's group), or as its owner.
func TestKVMOpenable(t *testing.T) {
	for _, c := range []struct {
		mode, owner, uid uint32
		want             bool
	}{
		{0o20660, 0, 64055, true},  // udev's root:kvm 0660
		{0o20666, 0, 64055, true},  // open to all
		{0o20600, 0, 64055, false}, // root only
		{0o20640, 0, 64055, false}, // the group may only read
		{0o20600, 64055, 64055, true},
		{0o20606, 0, 64055, true},
	} {
		if got := kvmOpenable(c.mode, c.owner, c.uid); got != c.want {
			t.Errorf("mode %o owner %d uid %d: %v, want %v", c.mode, c.owner, c.uid, got, c.want)
		}
	}
}
