package launcher

import (
	"context"
	"debug/elf"
	"os/exec"
	"strings"
	"time"
)

// SandboxArg is the -sandbox setting vmrun gives QEMU: seccomp mode 2
// with obsolete system calls, privilege changes (set*uid and friends),
// fork/exec and resource control (scheduler, affinity) all denied.
const SandboxArg = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// ProbeSandbox reports whether qemu was built with seccomp support
// (-sandbox). A binary linked against libseccomp has it, which reading
// its ELF header tells at once; for any other binary (static builds,
// wrapper scripts) it runs `qemu -help` once, with a short deadline.
func ProbeSandbox(qemu string) bool {
	if f, err := elf.Open(qemu); err == nil {
		libs, _ := f.ImportedLibraries()
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

// ProbeGUI reports whether qemu can open a window (a GTK or SDL display).
// It runs `qemu -display help` once, with a short deadline.
func ProbeGUI(qemu string) bool {
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
