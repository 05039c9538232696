// Package confine decides who QEMU runs as and whether its seccomp sandbox
// is on, and opens what a confined QEMU cannot open by path — the disk
// images and their backing chains, --kernel and --initrd, the runtime
// directory — with the rights of the user vmrun acts for, to pass them to
// QEMU as fds.
package confine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/overlay"
	"github.com/vmrun/vmrun/internal/privdrop"
	"github.com/vmrun/vmrun/internal/qemuprobe"
	"github.com/vmrun/vmrun/launcher"
)

// maxBackingDepth bounds a backing chain (and ends a loop of backing files).
const maxBackingDepth = 32

// QEMU is how QEMU is confined for one run.
type QEMU struct {
	// User is who QEMU runs as; nil: vmrun's own user (not root, or
	// --qemu-privileged).
	User *privdrop.User
	// Sandbox: QEMU's seccomp filter is on.
	Sandbox bool
	// NoSandbox is the notice to print when QEMU has no -sandbox.
	NoSandbox string
	// KVMDenied, when not "", is why QEMU runs under TCG although vmrun
	// can open /dev/kvm (KVMDenied).
	KVMDenied string
	// KVMBroken, when not "", is why QEMU runs under TCG although /dev/kvm
	// opens: KVM does not work with vmrun's CPU model (QEMU's words, from
	// launcher.ProbeKVM).
	KVMBroken string
}

// Choose decides who QEMU runs as and whether its seccomp sandbox is
// on. As root, QEMU runs as the user who ran sudo, else as `vmrun-qemu`
// (made by vmrun setup), else as nobody; --qemu-privileged keeps it as
// vmrun's own user with no sandbox.
func Choose(spec config.Spec, qemu string, kvm bool) (QEMU, error) {
	if spec.QEMUPrivileged {
		return QEMU{}, nil
	}
	var c QEMU
	if os.Geteuid() == 0 {
		u, err := privdrop.Choose(os.Getenv)
		if err != nil {
			return c, exitcode.Usagef("%w: unset them, or run vmrun through sudo", err)
		}
		if kvm {
			// /dev/kvm is opened by QEMU itself.
			var st unix.Stat_t
			if unix.Stat("/dev/kvm", &st) == nil {
				u = u.WithGroup(st.Gid)
			}
		}
		c.User = &u
	}
	if c.Sandbox = qemuprobe.Sandbox(qemu); !c.Sandbox {
		c.NoSandbox = fmt.Sprintf("%s was built without seccomp support (-sandbox): QEMU runs without its system-call filter", qemu)
	}
	return c, nil
}

// KVMDenied says why QEMU, run as the user Choose picks, could not open
// /dev/kvm although vmrun (root) can: "" when it could, when QEMU runs as
// vmrun's own user, or when there is no /dev/kvm (launcher.KVMUsable
// tells). Choose adds the device's group to that user's groups, so
// read-write access for the group (udev's usual root:kvm 0660) is enough.
func KVMDenied(spec config.Spec) string {
	var st unix.Stat_t
	if spec.QEMUPrivileged || os.Geteuid() != 0 || unix.Stat("/dev/kvm", &st) != nil {
		return ""
	}
	u, err := privdrop.Choose(os.Getenv)
	if err != nil || kvmOpenable(st.Mode, st.Uid, u.UID) {
		return "" // Choose reports a bad SUDO_UID
	}
	return fmt.Sprintf("/dev/kvm (mode %04o, uid %d, gid %d) cannot be opened by %s, the user QEMU runs as", st.Mode&0o7777, st.Uid, st.Gid, u)
}

// kvmOpenable reports whether a device of mode owned by uid owner can be
// opened read-write by uid, given the device's group (see KVMDenied).
func kvmOpenable(mode, owner, uid uint32) bool {
	const rw = 0o6
	return mode&rw == rw || (mode>>3)&rw == rw || uid == owner && (mode>>6)&rw == rw
}

// Describe says who QEMU runs as, for -v and --dry-run.
func (c QEMU) Describe() string {
	if c.User == nil {
		if os.Geteuid() == 0 {
			return "root, with every capability (--qemu-privileged: unsafe)"
		}
		return fmt.Sprintf("you (uid %d), with no capabilities", os.Geteuid())
	}
	why := map[string]string{
		privdrop.FromSudo:   "who ran sudo",
		privdrop.FromSystem: "made by vmrun setup",
		privdrop.FromNobody: privdrop.SystemUser + " does not exist: run `vmrun setup` to create it",
	}[c.User.From]
	return fmt.Sprintf("%s (%s), with no capabilities", c.User, why)
}

// OpenFiles checks that QEMU's user can reach the shares and opens the
// disks (setting their Files; with --snapshot, also their Overlay) and
// boot files (vm.BootFiles) for QEMU,
// before anything is created: one that cannot be opened is a usage error
// with nothing to undo. It returns a function that closes them all.
func (c QEMU) OpenFiles(spec config.Spec, vm *launcher.VM) (closeAll func(), err error) {
	if err := c.checkAccess(spec); err != nil {
		return nil, err
	}
	closeDisks, err := c.openDisks(spec, vm.Disks)
	if err != nil {
		return nil, err
	}
	closeOverlays := func() {}
	if spec.Snapshot {
		if closeOverlays, err = makeOverlays(vm.Disks); err != nil {
			closeDisks()
			return nil, err
		}
	}
	bootFiles, closeBoot, err := c.openBoot(spec)
	if err != nil {
		closeOverlays()
		closeDisks()
		return nil, err
	}
	vm.BootFiles = bootFiles
	return func() { closeBoot(); closeOverlays(); closeDisks() }, nil
}

// checkAccess checks, with the rights of the user QEMU runs as, what QEMU
// opens by path: --share directories. Every problem is a usage error
// naming the file and the fix.
func (c QEMU) checkAccess(spec config.Spec) error {
	if c.User == nil {
		return nil
	}
	u := *c.User
	for _, sh := range spec.Shares {
		// QEMU's 9p server reads (and writes) the share as its user.
		mode, what := uint32(unix.R_OK|unix.X_OK), "read"
		if !sh.ReadOnly {
			mode, what = mode|unix.W_OK, "read and written"
		}
		if err := u.Access(sh.Path, mode); err != nil {
			return exitcode.Usagef("--share %s cannot be %s by %s, the user QEMU runs as (%w): give that user access (e.g. setfacl -m u:%s:rwx %s, and search permission on its parents), or use --qemu-privileged (unsafe)", sh.Path, what, u, errors.Unwrap(err), u.Name, sh.Path)
		}
	}
	return nil
}

// makeOverlays gives each disk its --snapshot overlay (internal/overlay),
// made by vmrun: QEMU only gets its fd. It returns a function that closes
// them.
func makeOverlays(disks []launcher.Disk) (closeAll func(), err error) {
	var made []*os.File
	closeAll = func() {
		for _, f := range made {
			f.Close()
		}
	}
	dir := overlay.Dir()
	for i := range disks {
		d := &disks[i]
		size, err := guestSize(*d)
		if err != nil {
			closeAll()
			return nil, exitcode.Usagef("--snapshot: the size of disk image %s cannot be read (%v): check that it is a whole qcow2 or raw image (qemu-img info %s)", d.Path, err, d.Path)
		}
		rw, err := overlay.Create(dir, size)
		if err != nil {
			closeAll()
			return nil, exitcode.Usagef("--snapshot: vmrun cannot make the overlay for guest writes to %s in %s (%v): set TMPDIR to a directory vmrun can write, with room for those writes", d.Path, dir, err)
		}
		made = append(made, rw)
		ro, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(rw.Fd())))
		if err != nil {
			closeAll()
			return nil, exitcode.Setupf("--snapshot: vmrun cannot reopen the overlay for %s read-only: %w", d.Path, err)
		}
		made = append(made, ro)
		d.Overlay = []*os.File{ro, rw}
	}
	return closeAll, nil
}

// guestSize returns the size of disk d as the guest sees it: a qcow2
// image's virtual size, a raw image's length (rounded up to a sector, as
// QEMU does). It reads the fd opened for QEMU, or the file by path.
func guestSize(d launcher.Disk) (uint64, error) {
	var f *os.File
	if d.Files != nil {
		f = d.Files.Image[0]
	} else {
		var err error
		if f, err = os.Open(d.Path); err != nil {
			return 0, err
		}
		defer f.Close()
	}
	if d.Format == config.FormatQcow2 {
		h, err := config.ReadQcow2Header(f)
		return h.Size, err
	}
	// Seek, not Stat: a block device's length. QEMU reads and writes at
	// offsets; the fd's position is not its concern.
	n, err := f.Seek(0, io.SeekEnd)
	return (uint64(n) + 511) &^ 511, err
}

// openDisks opens every disk image and its backing chain for QEMU, which
// gets them as fds: it needs no access to them by path, and vmrun never
// changes their owner or mode. Under sudo they are opened with the rights
// of the user who ran sudo (sudo vmrun does not let that user boot a file
// they cannot read); as root otherwise. It returns a function that closes
// them all.
func (c QEMU) openDisks(spec config.Spec, disks []launcher.Disk) (closeAll func(), err error) {
	var opened []*os.File
	closeAll = func() {
		for _, f := range opened {
			f.Close()
		}
	}
	if c.User == nil {
		return closeAll, nil
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	u := *c.User
	open := func(p string, flag int) (*os.File, error) {
		if u.From == privdrop.FromSudo {
			return u.Open(p, flag)
		}
		return os.OpenFile(p, flag, 0)
	}
	whose := "vmrun"
	if u.From == privdrop.FromSudo {
		whose = u.String() + ", who ran sudo,"
	}
	for i := range disks {
		d := &disks[i]
		ro, err := open(d.Path, os.O_RDONLY)
		if err != nil {
			return closeAll, exitcode.Usagef("disk image %s cannot be read by %s (%w): make it readable by that user (e.g. setfacl -m u:%s:r %s, and search permission on its directories), or use --qemu-privileged (unsafe)", d.Path, whose, errors.Unwrap(err), u.Name, d.Path)
		}
		opened = append(opened, ro)
		files := &launcher.DiskFiles{Image: []*os.File{ro}}
		if !spec.Snapshot {
			rw, err := open(d.Path, os.O_RDWR)
			if err != nil {
				return closeAll, exitcode.Usagef("disk image %s cannot be written by %s (%w): add --snapshot to boot it without writing, or fix its permissions", d.Path, whose, errors.Unwrap(err))
			}
			opened = append(opened, rw)
			files.Image = append(files.Image, rw)
		}
		if d.Format == config.FormatQcow2 {
			chain, err := backingChain(d.Path, ro, open, &opened)
			if err != nil {
				return closeAll, err
			}
			files.Backing = chain
		}
		d.Files = files
	}
	return closeAll, nil
}

// openBoot opens --kernel and --initrd for QEMU, which opens them as
// /proc/self/fd/N: the directories of their paths need not be searchable
// by QEMU's user, but the files must be readable by it. Under sudo they are
// opened with the rights of the user who ran sudo. It returns nil without
// a confined QEMU or a kernel.
func (c QEMU) openBoot(spec config.Spec) (files *launcher.BootFiles, closeAll func(), err error) {
	closeAll = func() {}
	if c.User == nil || spec.Kernel == "" {
		return nil, closeAll, nil
	}
	u := *c.User
	var opened []*os.File
	closeAll = func() {
		for _, f := range opened {
			f.Close()
		}
	}
	open := func(flag, p string) (*os.File, error) {
		if p == "" {
			return nil, nil
		}
		var f *os.File
		var err error
		if u.From == privdrop.FromSudo {
			f, err = u.Open(p, os.O_RDONLY)
		} else {
			f, err = os.Open(p)
		}
		if err == nil {
			opened = append(opened, f)
			err = u.Reopen(f)
		}
		if err != nil {
			return nil, exitcode.Usagef("--%s %s cannot be read by %s, the user QEMU runs as (%w): make the file readable by that user (chmod o+r, or setfacl -m u:%s:r %s), or use --qemu-privileged (unsafe)", flag, p, u, errors.Unwrap(err), u.Name, p)
		}
		return f, nil
	}
	files = &launcher.BootFiles{}
	if files.Kernel, err = open("kernel", spec.Kernel); err == nil {
		files.Initrd, err = open("initrd", spec.Initrd)
	}
	if err != nil {
		closeAll()
		return nil, func() {}, err
	}
	return files, closeAll, nil
}

// backingChain opens the backing files of the qcow2 image f (at path),
// nearest first, and appends each to opened.
func backingChain(path string, f *os.File, open func(string, int) (*os.File, error), opened *[]*os.File) ([]launcher.BackingFile, error) {
	var chain []launcher.BackingFile
	for depth := 0; ; depth++ {
		h, err := config.ReadQcow2Header(f)
		if err != nil {
			return nil, exitcode.Usagef("disk image %s: %w: check it with `qemu-img check %s`", path, err, path)
		}
		if h.DataFile {
			return nil, exitcode.Usagef("disk image %s keeps its data in an external data file, which vmrun does not pass to QEMU: convert it (`qemu-img convert -O qcow2 %s new.qcow2`), or use --qemu-privileged (unsafe)", path, path)
		}
		if h.Backing == "" {
			return chain, nil
		}
		if depth == maxBackingDepth || strings.HasPrefix(h.Backing, "json:") {
			return nil, exitcode.Usagef("disk image %s has a backing file vmrun does not follow (%q, chain depth %d): flatten it (`qemu-img convert -O qcow2 %s new.qcow2`), or use --qemu-privileged (unsafe)", path, h.Backing, depth+1, path)
		}
		next := h.Backing
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(path), next)
		}
		nf, err := open(next, os.O_RDONLY)
		if err != nil {
			return nil, exitcode.Usagef("backing file %s of disk image %s cannot be read (%w): fix its permissions, or flatten the image (`qemu-img convert -O qcow2 %s new.qcow2`)", next, path, errors.Unwrap(err), path)
		}
		*opened = append(*opened, nf)
		format := h.BackingFormat
		if format == "" {
			format = sniffFormat(nf)
		}
		if format != config.FormatQcow2 && format != config.FormatRaw {
			return nil, exitcode.Usagef("backing file %s of disk image %s is in %s format, which vmrun does not pass to QEMU: convert the image (`qemu-img convert -O qcow2 %s new.qcow2`)", next, path, format, path)
		}
		chain = append(chain, launcher.BackingFile{Path: next, Format: format, File: nf})
		if format != config.FormatQcow2 {
			return chain, nil
		}
		path, f = next, nf
	}
}

// sniffFormat tells a qcow2 backing file from a raw one by its magic.
func sniffFormat(f *os.File) string {
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0); err != nil && !errors.Is(err, io.EOF) {
		return config.FormatRaw
	}
	if string(magic) == "QFI\xfb" {
		return config.FormatQcow2
	}
	return config.FormatRaw
}

// OpenRunDir returns an O_PATH fd of the runtime directory: passed to QEMU
// in an fdset labelled with the directory's path, it puts the path into
// QEMU's command line (what `vmrun gc` recognises QEMU by) in place of a
// pid file QEMU could not write there. An O_PATH fd lets QEMU neither read
// nor list the directory.
func OpenRunDir(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}
