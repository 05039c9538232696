package qemuprobe

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
)

// This file reads the names of the shared libraries an ELF binary needs
// (its DT_NEEDED entries) with no more than encoding/binary. debug/elf
// would do it, but it brings debug/dwarf, compress/zlib and internal/zstd
// along, whose package initialisation and size cost every vmrun process
// about 1 ms before main on the 2-CPU development VM (`vmrun --version`
// median 14.5 → 13.4 ms without them), whatever it runs. The test checks
// this reader against debug/elf's ImportedLibraries on real binaries.

// elfLayout is where the fields this reader needs lie, for one ELF class.
type elfLayout struct {
	word                             int // size of an address or offset: 4 or 8
	shoff, shentsize, shnum          int // in the file header
	shType, shOffset, shSize, shLink int // in a section header
}

var (
	elf32 = elfLayout{word: 4, shoff: 0x20, shentsize: 0x2e, shnum: 0x30, shType: 4, shOffset: 0x10, shSize: 0x14, shLink: 0x18}
	elf64 = elfLayout{word: 8, shoff: 0x28, shentsize: 0x3a, shnum: 0x3c, shType: 4, shOffset: 0x18, shSize: 0x20, shLink: 0x28}
)

const (
	shtDynamic = 6 // SHT_DYNAMIC
	dtNull     = 0 // DT_NULL: the dynamic section ends
	dtNeeded   = 1 // DT_NEEDED: a library's name, as an offset in the string table
	// maxDynamic bounds the dynamic section read: QEMU's is a few KB.
	maxDynamic = 1 << 20
	// maxSections bounds the section header table read: QEMU's is 2 KB.
	maxSections = 1 << 20
)

// elfFile is an open ELF file with its class and byte order.
type elfFile struct {
	r  io.ReaderAt
	l  elfLayout
	bo binary.ByteOrder
}

// section is the part of a section header the reader uses.
type section struct {
	typ          uint32
	offset, size uint64
	link         uint32
}

// neededLibs returns the DT_NEEDED entries of the ELF binary at path, in
// order; nil when it is not ELF, has none, or they cannot be read. It
// reads the dynamic section and only the names it points at (the whole
// dynamic string table is 0.5 MB for Debian's QEMU, ≈ 2 ms to read).
func neededLibs(path string) []string {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	f, ok := openELF(fh)
	if !ok {
		return nil
	}
	dyn, str, ok := f.dynamic()
	if !ok || dyn.size > maxDynamic {
		return nil
	}
	d := make([]byte, dyn.size)
	if _, err := f.r.ReadAt(d, int64(dyn.offset)); err != nil {
		return nil
	}
	var libs []string
	for es := 2 * f.l.word; len(d) >= es; d = d[es:] {
		tag, val := f.word(d), f.word(d[f.l.word:])
		if tag == dtNull {
			break
		}
		if tag != dtNeeded || val >= str.size {
			continue
		}
		if name, ok := f.cString(str.offset + val); ok {
			libs = append(libs, name)
		}
	}
	return libs
}

// openELF reads r's identification: the magic, the class and the byte
// order.
func openELF(r io.ReaderAt) (elfFile, bool) {
	var ident [16]byte
	if _, err := r.ReadAt(ident[:], 0); err != nil || string(ident[:4]) != "\x7fELF" {
		return elfFile{}, false
	}
	f := elfFile{r: r}
	switch ident[4] { // EI_CLASS
	case 1:
		f.l = elf32
	case 2:
		f.l = elf64
	default:
		return elfFile{}, false
	}
	switch ident[5] { // EI_DATA
	case 1:
		f.bo = binary.LittleEndian
	case 2:
		f.bo = binary.BigEndian
	default:
		return elfFile{}, false
	}
	return f, true
}

// dynamic returns the first SHT_DYNAMIC section and the string table its
// sh_link names.
func (f elfFile) dynamic() (dyn, str section, ok bool) {
	hdr := make([]byte, 0x40)
	if _, err := f.r.ReadAt(hdr, 0); err != nil {
		return dyn, str, false
	}
	shoff := f.word(hdr[f.l.shoff:])
	size, n := int(f.bo.Uint16(hdr[f.l.shentsize:])), int(f.bo.Uint16(hdr[f.l.shnum:]))
	if size < f.l.shLink+4 || n == 0 || size*n > maxSections {
		return dyn, str, false // n == 0: no sections, or 0xff00 or more (not QEMU)
	}
	tab := make([]byte, size*n)
	if _, err := f.r.ReadAt(tab, int64(shoff)); err != nil {
		return dyn, str, false
	}
	at := func(i int) section {
		h := tab[i*size:]
		return section{typ: f.bo.Uint32(h[f.l.shType:]), offset: f.word(h[f.l.shOffset:]), size: f.word(h[f.l.shSize:]), link: f.bo.Uint32(h[f.l.shLink:])}
	}
	for i := range n {
		if s := at(i); s.typ == shtDynamic {
			if int(s.link) >= n {
				return dyn, str, false
			}
			return s, at(int(s.link)), true
		}
	}
	return dyn, str, false
}

// word reads an address or offset of the file's class.
func (f elfFile) word(b []byte) uint64 {
	if f.l.word == 4 {
		return uint64(f.bo.Uint32(b))
	}
	return f.bo.Uint64(b)
}

// cString reads the NUL-terminated string at off; a library's name is
// far shorter than the window read.
func (f elfFile) cString(off uint64) (string, bool) {
	buf := make([]byte, 512)
	n, _ := f.r.ReadAt(buf, int64(off))
	i := bytes.IndexByte(buf[:n], 0)
	if i < 0 {
		return "", false
	}
	return string(buf[:i]), true
}
