// Package overlay makes the throwaway overlay that --snapshot sends a
// disk's writes to: an empty qcow2 image the size of the disk, in a file
// with no name, which QEMU gets as an open fd with the disk as its backing
// image. The kernel frees a file with no name when its last fd closes, so
// nothing is left behind however vmrun or QEMU ends (QEMU's own
// snapshot=on makes a named file in /var/tmp, which a QEMU killed early
// can leave behind: one was found on the development machine); and QEMU
// starts sooner without making one itself (BenchmarkQEMUArgv's
// "qemu-snapshot" against "argv").
package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The image's layout, as QEMU's docs/interop/qcow2.txt describes version 3:
// 64 KiB clusters; the header in cluster 0, the refcount table in cluster
// 1, its one refcount block (16-bit refcounts) in cluster 2 and the L1
// table from cluster 3 on, all zero (no data cluster allocated yet).
const (
	clusterBits   = 16
	clusterSize   = 1 << clusterBits
	headerLength  = 104 // version 3's fixed header; no optional fields
	refcountOrder = 4   // 16-bit refcounts
	l2Covers      = clusterSize / 8 * clusterSize
	refTableAt    = 1 * clusterSize
	refBlockAt    = 2 * clusterSize
	l1At          = 3 * clusterSize
	refsPerBlock  = clusterSize * 8 >> refcountOrder
)

// image returns the parts of an empty qcow2 image of size bytes (the
// guest's disk size) as offset → bytes, and the file's length; the bytes
// between the parts are zero.
func image(size uint64) (parts map[int64][]byte, length int64, err error) {
	l1Size := (size + l2Covers - 1) / l2Covers
	l1Bytes := l1Size * 8
	clusters := 3 + (l1Bytes+clusterSize-1)/clusterSize
	if size == 0 || clusters > refsPerBlock {
		return nil, 0, fmt.Errorf("a %d-byte disk has no overlay of this layout", size)
	}
	be := binary.BigEndian
	h := make([]byte, headerLength)
	copy(h, "QFI\xfb")
	be.PutUint32(h[4:], 3) // version
	be.PutUint32(h[20:], clusterBits)
	be.PutUint64(h[24:], size)
	be.PutUint32(h[36:], uint32(l1Size))
	be.PutUint64(h[40:], l1At)
	be.PutUint64(h[48:], refTableAt)
	be.PutUint32(h[56:], 1) // refcount table clusters
	be.PutUint32(h[96:], refcountOrder)
	be.PutUint32(h[100:], headerLength)
	// The 8 zero bytes after the header end its (empty) extension list.
	refTable := be.AppendUint64(nil, refBlockAt)
	refBlock := make([]byte, 2*clusters) // every cluster of the file used once
	for i := range clusters {
		be.PutUint16(refBlock[2*i:], 1)
	}
	return map[int64][]byte{0: h, refTableAt: refTable, refBlockAt: refBlock}, int64(l1At + l1Bytes), nil
}

// Dir is where overlays go: $TMPDIR, else /var/tmp (as QEMU's own, for
// files that may grow large).
func Dir() string {
	if dir := os.Getenv("TMPDIR"); dir != "" {
		return dir
	}
	return "/var/tmp"
}

// Create writes an empty qcow2 image of size bytes to a new file with no
// name in dir and returns it open for reading and writing.
func Create(dir string, size uint64) (*os.File, error) {
	f, err := unnamed(dir)
	if err != nil {
		return nil, err
	}
	if err := Write(f, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing the overlay in %s: %w", dir, err)
	}
	return f, nil
}

// Write writes an empty qcow2 image of size bytes to the empty file f.
func Write(f *os.File, size uint64) error {
	parts, length, err := image(size)
	if err != nil {
		return err
	}
	for off, b := range parts {
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return f.Truncate(length)
}

// unnamed opens a new file with no name in dir: O_TMPFILE, or where the
// file system lacks it, a named file removed at once.
func unnamed(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(overlay)"), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) {
		return nil, &os.PathError{Op: "create a file in", Path: dir, Err: err}
	}
	f, err := os.CreateTemp(dir, ".vmrun-overlay-")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
