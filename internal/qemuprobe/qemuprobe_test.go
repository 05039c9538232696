package qemuprobe

import (
	"debug/elf"
	"os/exec"
	"slices"
	"testing"
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
// debug/elf's own (slower) ImportedLibraries does.
func TestNeededLibs(t *testing.T) {
	bins := []string{"/bin/sh", "/usr/bin/env"}
	if q, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		bins = append(bins, q)
	}
	read := 0
	for _, bin := range bins {
		f, err := elf.Open(bin)
		if err != nil {
			continue
		}
		want, err := f.ImportedLibraries()
		got := neededLibs(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: neededLibs = %q, ImportedLibraries = %q", bin, got, want)
		}
		read++
	}
	if read == 0 {
		t.Fatalf("none of %q is an ELF binary here", bins)
	}
}
