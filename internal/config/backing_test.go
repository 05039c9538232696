package config

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
)

// qcow2Header builds a qcow2 header: version 2 or 3, an optional backing
// name, and header extensions (type, data).
func qcow2Header(version uint32, backing string, incompat uint64, exts ...any) []byte {
	be := binary.BigEndian
	hdrLen := 72
	if version >= 3 {
		hdrLen = 104
	}
	b := make([]byte, hdrLen)
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], version)
	if version >= 3 {
		be.PutUint64(b[72:], incompat)
		be.PutUint32(b[100:], uint32(hdrLen))
	}
	for i := 0; i+1 < len(exts); i += 2 {
		data := []byte(exts[i+1].(string))
		b = be.AppendUint32(b, exts[i].(uint32))
		b = be.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
	}
	b = append(b, make([]byte, 8)...) // end of extensions
	if backing != "" {
		be.PutUint64(b[8:], uint64(len(b)))
		be.PutUint32(b[16:], uint32(len(backing)))
		b = append(b, backing...)
	}
	return b
}

func TestReadQcow2Header(t *testing.T) {
	cases := map[string]struct {
		img  []byte
		want Qcow2Header
		err  error
	}{
		"v3 no backing":     {img: qcow2Header(3, "", 0), want: Qcow2Header{}},
		"v3 backing+format": {img: qcow2Header(3, "base.qcow2", 0, uint32(qcowExtBackingFormat), "qcow2"), want: Qcow2Header{Backing: "base.qcow2", BackingFormat: "qcow2"}},
		"v2 backing":        {img: qcow2Header(2, "/abs/base.img", 0), want: Qcow2Header{Backing: "/abs/base.img"}},
		"data file bit":     {img: qcow2Header(3, "", qcowIncompatDataFile), want: Qcow2Header{DataFile: true}},
		"data file ext":     {img: qcow2Header(3, "", 0, uint32(qcowExtDataFile), "data.raw"), want: Qcow2Header{DataFile: true}},
		"raw":               {img: make([]byte, 512), err: ErrNotQcow2},
		"short":             {img: []byte("QFI\xfb\x00\x00\x00\x03"), err: ErrNotQcow2},
	}
	bad := qcow2Header(3, "base.qcow2", 0)
	binary.BigEndian.PutUint32(bad[16:], 1<<20) // name runs past the header
	cases["name out of bounds"] = struct {
		img  []byte
		want Qcow2Header
		err  error
	}{img: bad, err: ErrBadQcow2}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h, err := ReadQcow2Header(bytes.NewReader(c.img))
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || h != c.want {
				t.Fatalf("got %+v, %v; want %+v", h, err, c.want)
			}
		})
	}
}

// TestReadQcow2HeaderQemuImg reads the header of an overlay qemu-img made
// (its size is its backing image's).
func TestReadQcow2HeaderQemuImg(t *testing.T) {
	qemuImg := testutil.RequireCmd(t, "qemu-img")
	dir := t.TempDir()
	base, top := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "top.qcow2")
	for _, args := range [][]string{
		{"create", "-f", "qcow2", base, "1M"},
		{"create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top},
	} {
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	f, err := os.Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadQcow2Header(f)
	if err != nil || h != (Qcow2Header{Size: 1 << 20, Backing: "base.qcow2", BackingFormat: "qcow2"}) {
		t.Fatalf("got %+v, %v", h, err)
	}
}
