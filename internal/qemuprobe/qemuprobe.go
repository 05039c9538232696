// Package qemuprobe asks a QEMU binary what it was built with: seccomp
// (-sandbox) and a windowed display. vmbuild's configuration and the
// launcher's console choice use it.
package qemuprobe

import (
	"bytes"
	"context"
	"debug/elf"
	"os/exec"
	"strings"
	"time"
)

// Sandbox reports whether qemu was built with seccomp support
// (-sandbox). A binary linked against libseccomp has it, which reading
// its ELF header tells at once; for any other binary (static builds,
// wrapper scripts) it runs `qemu -help` once, with a short deadline.
func Sandbox(qemu string) bool {
	if f, err := elf.Open(qemu); err == nil {
		libs := neededLibs(f)
		f.Close()
		for _, l := range libs {
			if strings.HasPrefix(l, "libseccomp.so") {
				return true
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "-help").Output()
	if err != nil {
		return false
	}
	return HasSandbox(string(out))
}

// neededLibs returns f's DT_NEEDED entries (nil if it has none or they
// cannot be read). It reads the dynamic section and only the names it
// points at: elf.File.ImportedLibraries reads the whole dynamic string
// table, 0.5 MB for Debian's QEMU, which cost ≈ 2 ms of every vmrun start.
func neededLibs(f *elf.File) []string {
	dyn := f.SectionByType(elf.SHT_DYNAMIC)
	if dyn == nil || int(dyn.Link) >= len(f.Sections) {
		return nil
	}
	d, err := dyn.Data()
	if err != nil {
		return nil
	}
	str := f.Sections[dyn.Link]
	size := 16 // Elf64_Dyn: 8-byte tag, 8-byte value
	if f.Class == elf.ELFCLASS32 {
		size = 8
	}
	var libs []string
	for ; len(d) >= size; d = d[size:] {
		var tag, val uint64
		if size == 16 {
			tag, val = f.ByteOrder.Uint64(d), f.ByteOrder.Uint64(d[8:])
		} else {
			tag, val = uint64(f.ByteOrder.Uint32(d)), uint64(f.ByteOrder.Uint32(d[4:]))
		}
		if elf.DynTag(tag) == elf.DT_NULL {
			break
		}
		if elf.DynTag(tag) != elf.DT_NEEDED || val >= str.Size {
			continue
		}
		// A library's name is far shorter than this window.
		buf := make([]byte, 512)
		n, _ := str.ReadAt(buf, int64(val))
		if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
			libs = append(libs, string(buf[:i]))
		}
	}
	return libs
}

// HasSandbox parses the output of `qemu -help`: QEMU lists -sandbox only
// when it was built with seccomp.
func HasSandbox(help string) bool {
	for _, l := range strings.Split(help, "\n") {
		if strings.HasPrefix(l, "-sandbox ") {
			return true
		}
	}
	return false
}

// GUI reports whether qemu can open a window (a GTK or SDL display).
// It runs `qemu -display help` once, with a short deadline.
func GUI(qemu string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "-display", "help").Output()
	if err != nil {
		return false
	}
	return HasGUIDisplay(string(out))
}

// HasGUIDisplay parses the output of `qemu -display help`.
func HasGUIDisplay(help string) bool {
	for _, l := range strings.Split(help, "\n") {
		switch strings.TrimSpace(l) {
		case "gtk", "sdl":
			return true
		}
	}
	return false
}
