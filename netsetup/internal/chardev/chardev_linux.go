// Package chardev opens the character device of a macvtap or ipvtap link:
// its device number from its uevent or read from the sysfs of the link's
// own network namespace, and its node in /dev when that is the device,
// else a private node made, opened and removed at once.
package chardev

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// GroupNonce returns a random non-zero device group number.
func GroupNonce() (uint32, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint32(b[:])&0x7fffffff | 1, nil
}

// TapDevNum returns the device number of the character device of the
// macvtap or ipvtap link (kind "macvtap" or "ipvtap") name, with ifindex
// index and device group nonce, in the calling thread's network namespace.
// /dev/tapN is named by ifindex, which is per namespace, and /sys shows the
// namespace of whoever mounted it: another namespace may show a twin with
// the same name, ifindex and MAC. Only this link has the nonce, so /sys is
// used when it shows the nonce; otherwise a private sysfs of this
// namespace. from says which.
func TapDevNum(kind, name string, index int, nonce uint32) (dev uint64, from string, err error) {
	rel := filepath.Join("class/net", name, kind, "tap"+strconv.Itoa(index), "dev")
	host := sysfs{dirfd: unix.AT_FDCWD, prefix: "/sys/"}
	if host.shows(name, nonce) {
		dev, err = host.devNum(rel)
		return dev, "/sys", err
	}
	mfd, err := mountSysfs()
	if err != nil {
		return 0, "", fmt.Errorf("/sys shows another network namespace, and a sysfs of this one cannot be mounted (that needs CAP_SYS_ADMIN and Linux 5.2): %w", err)
	}
	// Dissolving the mount waits for an RCU grace period: not on our path.
	defer func() { go unix.Close(mfd) }()
	dev, err = sysfs{dirfd: mfd}.devNum(rel)
	return dev, "a private sysfs", err
}

// mountSysfs returns a detached sysfs mount (fsopen, fsmount) of the
// calling thread's network namespace: attached nowhere, seen by nobody,
// gone when the fd is closed.
func mountSysfs() (int, error) {
	fsfd, err := unix.Fsopen("sysfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen sysfs: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("create sysfs: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsmount sysfs: %w", err)
	}
	return mfd, nil
}

// sysfs is a sysfs tree: /sys, or a detached mount (dirfd).
type sysfs struct {
	dirfd  int
	prefix string
}

// read returns the trimmed content of a file of the tree.
func (s sysfs) read(rel string) (string, error) {
	fd, err := unix.Openat(s.dirfd, s.prefix+rel, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: s.prefix + rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), s.prefix+rel)
	defer f.Close()
	b, err := io.ReadAll(f)
	return strings.TrimSpace(string(b)), err
}

// shows reports whether the tree shows link name in device group nonce
// (if it does not, it belongs to another namespace).
func (s sysfs) shows(name string, nonce uint32) bool {
	g, err := s.read(filepath.Join("class/net", name, "netdev_group"))
	return err == nil && g == strconv.FormatUint(uint64(nonce), 10)
}

// devNum reads a "dev" file of the tree.
func (s sysfs) devNum(rel string) (uint64, error) {
	v, err := s.read(rel)
	if err != nil {
		return 0, err
	}
	return parseDevNum(rel, v)
}

// parseDevNum parses a sysfs "dev" value ("MAJOR:MINOR").
func parseDevNum(path, v string) (uint64, error) {
	maj, min, ok := strings.Cut(v, ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: %q is not MAJOR:MINOR", path, v)
	}
	return unix.Mkdev(uint32(ma), uint32(mi)), nil
}

// OpenCharDev opens character device dev n times and says through what:
// /dev/NAME (name is "tapN") when that node is dev — devtmpfs makes one
// for each macvtap and ipvtap, named by its ifindex in its own namespace,
// so another namespace's tap may hold the name: the node's number is
// checked before it is opened (opening another link's node would add a
// queue to it) and on each opened file — else a private node: mknod in a
// fresh 0700 directory, open, then remove node and directory.
func OpenCharDev(dev uint64, name string, n int) (files []*os.File, from string, err error) {
	path := "/dev/" + name
	if files, ok := openNode(path, dev, n); ok {
		return files, path, nil
	}
	files, err = openPrivate(dev, n)
	return files, "a private node", err
}

// openNode opens path n times if it is character device dev; false,
// with nothing left open, if it is not or cannot be opened.
func openNode(path string, dev uint64, n int) ([]*os.File, bool) {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != dev {
		return nil, false
	}
	files := make([]*os.File, 0, n)
	for i := 0; i < n; i++ {
		// os.OpenFile, as for a private node: the file is non-blocking
		// and in Go's poller, so its reads honour deadlines.
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
		if err == nil {
			if fi, serr := f.Stat(); serr != nil || !isDev(fi, dev) {
				f.Close()
				err = unix.ENODEV
			}
		}
		if err != nil {
			closeAll(files)
			return nil, false
		}
		files = append(files, f)
	}
	return files, true
}

// isDev reports whether fi is character device dev.
func isDev(fi os.FileInfo, dev uint64) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == dev
}

// closeAll closes files.
func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// openPrivate opens character device dev n times through a private node.
func openPrivate(dev uint64, n int) ([]*os.File, error) {
	dir, err := os.MkdirTemp(nodeDir(), ".vmrun-tap-")
	if err != nil {
		return nil, fmt.Errorf("private device directory: %w", err)
	}
	defer os.RemoveAll(dir)
	node := filepath.Join(dir, "tap")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(dev)); err != nil {
		return nil, fmt.Errorf("mknod %d:%d: %w", unix.Major(dev), unix.Minor(dev), err)
	}
	files := make([]*os.File, 0, n)
	for i := 0; i < n; i++ {
		f, err := os.OpenFile(node, os.O_RDWR, 0)
		if err != nil {
			errs := []error{fmt.Errorf("open queue %d of device %d:%d: %w", i, unix.Major(dev), unix.Minor(dev), err)}
			for _, f := range files {
				errs = append(errs, f.Close())
			}
			return nil, errors.Join(errs...)
		}
		files = append(files, f)
	}
	return files, nil
}

// nodeDir is where private device nodes are made (in a fresh 0700
// directory, removed right after): /dev when it is an in-memory devtmpfs
// or tmpfs, which allows device nodes and makes this take microseconds
// instead of a journaled file system's hundreds; else the temporary
// directory, unless it is mounted nodev (nodes would not open there).
func nodeDir() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev", &st); err == nil && st.Flags&unix.ST_NODEV == 0 &&
		(st.Type == unix.TMPFS_MAGIC) && unix.Access("/dev", unix.W_OK) == nil {
		return "/dev"
	}
	tmp := os.TempDir()
	if err := unix.Statfs(tmp, &st); err == nil && st.Flags&unix.ST_NODEV != 0 {
		return "/dev"
	}
	return tmp
}
