package launcher

import (
	"context"
	"os/exec"
	"strings"
	"time"
)

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
