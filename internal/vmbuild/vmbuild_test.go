package vmbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	w, closeLog, err := ConsoleWriter(&term, config.Spec{}, launcher.ConsoleSerial, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "login: ")
	if err := closeLog(); err != nil || term.String() != "login: " {
		t.Errorf("serial console: %q, %v", term.String(), err)
	}
	_, _, err = ConsoleWriter(&term, config.Spec{SerialLog: filepath.Join(t.TempDir(), "no", "such", "dir", "log")}, launcher.ConsoleSerial, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "--serial-log") {
		t.Errorf("an unwritable --serial-log: %v", err)
	}
}

// closedPipe fails every write as a pipe whose reader has gone does.
type closedPipe struct{ writes int }

func (c *closedPipe) Write([]byte) (int, error) {
	c.writes++
	return 0, syscall.EPIPE
}

// A standard output that fails (`vmrun ... | head`) costs the console
// there, with one notice, and nothing else: the serial log gets it all.
func TestConsoleWriterStdoutGone(t *testing.T) {
	log := filepath.Join(t.TempDir(), "serial.log")
	var out closedPipe
	var notices []string
	w, closeLog, err := ConsoleWriter(&out, config.Spec{Name: "web", SerialLog: log}, launcher.ConsoleSerial, func(f string, a ...any) {
		notices = append(notices, fmt.Sprintf(f, a...))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"first\n", "second\n", "third\n"} {
		if n, err := fmt.Fprint(w, line); n != len(line) || err != nil {
			t.Fatalf("write %q: %d, %v", line, n, err)
		}
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(log); err != nil || string(b) != "first\nsecond\nthird\n" {
		t.Errorf("serial log %q, %v: want all three lines", b, err)
	}
	if out.writes != 1 {
		t.Errorf("%d writes to the failed standard output, want 1 (dropped after the first failure)", out.writes)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "broken pipe") || !strings.Contains(notices[0], "--serial-log "+log+" still gets it") || !strings.Contains(notices[0], "vmrun stop web") {
		t.Errorf("notices %q: want one naming the error, the log and how to stop the VM", notices)
	}
}
