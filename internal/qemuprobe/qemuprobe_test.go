package qemuprobe

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
)

func TestHasGUIDisplay(t *testing.T) {
	headless := "Available display backend types:\nnone\ncurses\ndbus\n"
	if HasGUIDisplay(headless) {
		t.Error("headless QEMU reported as having a GUI")
	}
	if !HasGUIDisplay(headless + "gtk\n") {
		t.Error("gtk not detected")
	}
}

func TestHasSandbox(t *testing.T) {
	with := "-runas user      change to user id user just before starting the VM\n" +
		"-sandbox on[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]\n" +
		"          [,spawn=allow|deny][,resourcecontrol=allow|deny]\n"
	without := "-runas user      change to user id user just before starting the VM\n" +
		"                Enable seccomp mode 2 system call filter (default 'off').\n"
	if !HasSandbox(with) || HasSandbox(without) || HasSandbox("") {
		t.Fatal("HasSandbox misread QEMU's -help")
	}
}

// TestNeededLibs reads the DT_NEEDED entries of real binaries as
// debug/elf's own ImportedLibraries does: 64-bit programs, QEMU, and
// 32-bit ones (syslinux's modules, installed by make test-deps).
func TestNeededLibs(t *testing.T) {
	bins := []string{"/bin/sh", "/usr/bin/env"}
	if q, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		bins = append(bins, q)
	}
	c32, _ := filepath.Glob("/usr/lib/syslinux/modules/bios/*.c32")
	bins = append(bins, c32...)
	read, class32, some := 0, 0, 0
	for _, bin := range bins {
		f, err := elf.Open(bin)
		if err != nil {
			continue
		}
		want, err := f.ImportedLibraries()
		if f.Class == elf.ELFCLASS32 {
			class32++
		}
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		if got := neededLibs(bin); !slices.Equal(got, want) {
			t.Errorf("%s: neededLibs = %q, ImportedLibraries = %q", bin, got, want)
		}
		if len(want) > 0 {
			some++
		}
		read++
	}
	if read == 0 || some == 0 {
		t.Fatalf("none of %q is an ELF binary with shared libraries here", bins)
	}
	if class32 == 0 {
		testutil.Skipf(t, "the 32-bit reader is unchecked: no 32-bit ELF file here (syslinux-common's modules; run `make test-deps`)")
	}
}

// TestNeededLibsNotELF: files that are not ELF, or are cut short, have
// no libraries (Sandbox then asks QEMU's -help).
func TestNeededLibsNotELF(t *testing.T) {
	dir := t.TempDir()
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if len(neededLibs("/bin/sh")) == 0 {
		t.Fatal("/bin/sh has no DT_NEEDED entries here: the cut copies below would prove nothing")
	}
	files := map[string][]byte{
		"script":    []byte("#!/bin/sh\nexec qemu-system-x86_64 \"$@\"\n"),
		"empty":     nil,
		"ident":     sh[:16],
		"header":    sh[:0x40],
		"half":      sh[:len(sh)/2],
		"bad-class": append([]byte("\x7fELF\x03\x01"), sh[6:]...),
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if got := neededLibs(p); got != nil {
			t.Errorf("%s: neededLibs = %q, want none", name, got)
		}
	}
	if got := neededLibs(filepath.Join(dir, "missing")); got != nil {
		t.Errorf("missing file: neededLibs = %q", got)
	}
	// A header claiming a section table of 4 GB: nothing that size is
	// read (or allocated).
	huge := filepath.Join(dir, "huge-table")
	if err := os.WriteFile(huge, hugeTable(sh), 0o755); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := neededLibs(huge)
	runtime.ReadMemStats(&after)
	if got != nil || after.TotalAlloc-before.TotalAlloc > 1<<20 {
		t.Errorf("huge section table: neededLibs = %q, %d bytes allocated", got, after.TotalAlloc-before.TotalAlloc)
	}
}

// hugeTable is /bin/sh's start with a section header table claimed to
// hold 65535 entries of 65535 bytes (4 GB): not to be read.
func hugeTable(sh []byte) []byte {
	b := bytes.Clone(sh[:4096])
	binary.LittleEndian.PutUint16(b[0x3a:], 0xffff) // e_shentsize (64-bit, little-endian)
	binary.LittleEndian.PutUint16(b[0x3c:], 0xfffe) // e_shnum
	return b
}
