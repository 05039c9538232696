package config

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Backing files of qcow2 images.
var (
	// ErrNotQcow2 means the image has no qcow2 header.
	ErrNotQcow2 = errors.New("not a qcow2 image")
	// ErrBadQcow2 means a qcow2 header field points outside the header.
	ErrBadQcow2 = errors.New("malformed qcow2 header")
)

// Qcow2Header is what vmrun reads from a qcow2 header to pass an image's
// backing chain to QEMU as open files, and to make a --snapshot overlay.
type Qcow2Header struct {
	// Size is the guest's disk size in bytes (the image's virtual size).
	Size uint64
	// Backing is the backing file's name as stored (relative names are
	// relative to the image's directory); empty when there is none.
	Backing string
	// BackingFormat is the stored backing format ("" when not recorded).
	BackingFormat string
	// DataFile is set when the image keeps its data in an external file.
	DataFile bool
}

// qcow2 header extensions (QEMU's docs/interop/qcow2.txt).
const (
	qcowExtEnd           = 0x00000000
	qcowExtBackingFormat = 0xe2792aca
	qcowExtDataFile      = 0x44415441
	qcowIncompatDataFile = 1 << 2
	qcowMaxHeader        = 64 << 10 // header and extensions live in the first cluster; 64 KiB is plenty
)

// ReadQcow2Header reads the backing file name, its format and the
// external-data-file flag from the qcow2 image r.
func ReadQcow2Header(r io.ReaderAt) (Qcow2Header, error) {
	buf := make([]byte, qcowMaxHeader)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Qcow2Header{}, err
	}
	buf = buf[:n]
	if len(buf) < 72 || string(buf[:4]) != "QFI\xfb" {
		return Qcow2Header{}, ErrNotQcow2
	}
	be := binary.BigEndian
	version := be.Uint32(buf[4:])
	h := Qcow2Header{Size: be.Uint64(buf[24:])}
	if off, size := be.Uint64(buf[8:]), uint64(be.Uint32(buf[16:])); off != 0 && size != 0 {
		if off+size > uint64(len(buf)) {
			return Qcow2Header{}, fmt.Errorf("%w: backing file name at %d+%d", ErrBadQcow2, off, size)
		}
		h.Backing = string(buf[off : off+size])
	}
	extAt := uint64(72)
	if version >= 3 {
		if len(buf) < 104 {
			return Qcow2Header{}, fmt.Errorf("%w: short version 3 header", ErrBadQcow2)
		}
		h.DataFile = be.Uint64(buf[72:])&qcowIncompatDataFile != 0
		extAt = uint64(be.Uint32(buf[100:]))
	}
	for extAt+8 <= uint64(len(buf)) {
		typ, l := be.Uint32(buf[extAt:]), uint64(be.Uint32(buf[extAt+4:]))
		data := extAt + 8
		if typ == qcowExtEnd {
			break
		}
		if data+l > uint64(len(buf)) {
			return Qcow2Header{}, fmt.Errorf("%w: header extension %#x at %d+%d", ErrBadQcow2, typ, data, l)
		}
		switch typ {
		case qcowExtBackingFormat:
			h.BackingFormat = string(buf[data : data+l])
		case qcowExtDataFile:
			h.DataFile = true
		}
		extAt = data + (l+7)/8*8
	}
	return h, nil
}
