package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Disk formats vmrun boots.
const (
	FormatQcow2 = "qcow2"
	FormatRaw   = "raw"
)

// foreign are image formats QEMU knows but vmrun does not take, by magic.
var foreign = []struct {
	magic []byte
	name  string
}{
	{[]byte("KDMV"), "VMDK"},
	{[]byte("<<< Oracle VM VirtualBox Disk Image >>>"), "VDI"},
	{[]byte("vhdxfile"), "VHDX"},
	{[]byte("conectix"), "VHD"},
	{[]byte("QED\x00"), "QED"},
	{[]byte("QFI\xfb"), ""}, // qcow2 or qcow1, told apart by version below
}

// DetectFormat checks that path is a readable, non-empty disk image and
// returns its format, from its contents (never from its name). If writable
// is true, the image must also be writable.
func DetectFormat(path string, writable bool) (string, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("disk image %s does not exist: check the path given to --disk", path)
	case errors.Is(err, os.ErrPermission):
		return "", fmt.Errorf("disk image %s cannot be read (permission denied on a directory of its path): fix the permissions or run vmrun as a user who can read it", path)
	case err != nil:
		return "", fmt.Errorf("disk image %s cannot be read: %v", path, errors.Unwrap(err))
	case fi.IsDir():
		return "", fmt.Errorf("disk image %s is a directory: give the path of an image file to --disk", path)
	case !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0:
		return "", fmt.Errorf("disk image %s is not a regular file or block device: give an image file to --disk", path)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("disk image %s cannot be read (permission denied): fix its permissions or run vmrun as a user who can read it", path)
		}
		return "", fmt.Errorf("disk image %s cannot be read: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if n == 0 {
		if err == io.EOF {
			return "", fmt.Errorf("disk image %s is empty (0 bytes): give a qcow2 or raw disk image", path)
		}
		return "", fmt.Errorf("disk image %s cannot be read: %v", path, err)
	}
	head = head[:n]
	format := ""
	for _, m := range foreign {
		if !bytes.HasPrefix(head, m.magic) {
			continue
		}
		if m.name != "" {
			return "", fmt.Errorf("disk image %s is in %s format, which vmrun does not boot: convert it with `qemu-img convert -O qcow2 %s %s.qcow2`", path, m.name, path, path)
		}
		if len(head) < 8 || head[7] < 2 {
			return "", fmt.Errorf("disk image %s is an old qcow (version 1) image: convert it with `qemu-img convert -O qcow2 %s %s.qcow2`", path, path, path)
		}
		format = FormatQcow2
	}
	if format == "" {
		if fi.Mode().IsRegular() && fi.Size()%512 != 0 {
			return "", fmt.Errorf("disk image %s is neither qcow2 nor a raw disk (its size, %d bytes, is not a multiple of 512): give a qcow2 or raw disk image", path, fi.Size())
		}
		format = FormatRaw
	}
	if writable && unix.Access(path, unix.W_OK) != nil {
		return "", fmt.Errorf("disk image %s is not writable by you: add --snapshot to boot it without writing, or fix its permissions", path)
	}
	return format, nil
}
