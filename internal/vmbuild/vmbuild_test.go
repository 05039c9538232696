package vmbuild

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

func TestAnnounce(t *testing.T) {
	var lines []string
	notify := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	spec := config.Spec{Shares: []launcher.Share{{Path: "/srv/data", Tag: "data", ReadOnly: true}}}
	Announce(notify, spec, false, "", "", netsetup.Plan{Mode: netsetup.Macvtap})
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"--share /srv/data: virtio-9p, tag data, read-only (in the guest: mount -t 9p -o trans=virtio,version=9p2000.L data /mnt/data)",
		"using TCG software emulation",
		"vhost=off",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	lines = nil
	Announce(notify, config.Spec{}, false, "", "error: failed to set MSR 0x10a to 0x69", netsetup.Plan{Mode: netsetup.Macvtap, Vhost: true})
	if want := "/dev/kvm is present but KVM does not work here (QEMU: error: failed to set MSR 0x10a to 0x69); using TCG"; len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Errorf("notices for a run whose KVM does not work: %q, want one starting %q", lines, want)
	}
	lines = nil
	Announce(notify, config.Spec{}, true, "", "", netsetup.Plan{Mode: netsetup.Macvtap, Vhost: true})
	if len(lines) != 0 {
		t.Errorf("notices for a run with KVM, vhost and no shares: %q", lines)
	}
}

func TestPrintTail(t *testing.T) {
	tail := linetail.New(ConsoleTail)
	tail.Add("one")
	tail.Add("two")
	var b strings.Builder
	PrintTail(&b, tail)
	want := "vmrun: the last 2 lines of the guest's serial console:\n  | one\n  | two\n"
	if b.String() != want {
		t.Errorf("PrintTail = %q, want %q", b.String(), want)
	}
}

func TestConsoleWriter(t *testing.T) {
	var term strings.Builder
	w, closeLog, err := ConsoleWriter(&term, config.Spec{}, launcher.ConsoleSerial)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "login: ")
	if err := closeLog(); err != nil || term.String() != "login: " {
		t.Errorf("serial console: %q, %v", term.String(), err)
	}
	_, _, err = ConsoleWriter(&term, config.Spec{SerialLog: filepath.Join(t.TempDir(), "no", "such", "dir", "log")}, launcher.ConsoleSerial)
	if err == nil || !strings.Contains(err.Error(), "--serial-log") {
		t.Errorf("an unwritable --serial-log: %v", err)
	}
}
