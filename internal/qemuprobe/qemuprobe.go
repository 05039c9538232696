// Package qemuprobe asks a QEMU binary what it was built with: seccomp
// (-sandbox) and a windowed display. vmbuild's configuration and the
// launcher's console choice use it.
package qemuprobe

import (
	"context"
	"os/exec"
	"strings"
	"time"
)

// Sandbox reports whether qemu was built with seccomp support
// (-sandbox). A binary linked against libseccomp has it, which reading
// its ELF header tells at once; for any other binary (static builds,
// wrapper scripts) it runs `qemu -help` once, with a short deadline.
func Sandbox(qemu string) bool {
	for _, l := range neededLibs(qemu) {
		if strings.HasPrefix(l, "libseccomp.so") {
			return true
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
