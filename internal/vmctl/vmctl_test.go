package vmctl

import (
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// TestLiveDirAndStopRefusals: a running VM's directory is found; a bad
// name, no such VM and a VM whose vmrun was killed are usage errors, for
// LiveDir and for Stop, which signals nothing then.
func TestLiveDirAndStopRefusals(t *testing.T) {
	root := t.TempDir()
	live, _, err := rundir.Create(root, "live")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Remove() })
	stale, _, err := rundir.Create(root, "stale")
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Update(func(s *rundir.State) { s.Name, s.PID = "stale", 1 }); err != nil {
		t.Fatal(err)
	}
	_ = stale.Close()
	dir, err := LiveDir(root, "live")
	if err != nil || !strings.HasPrefix(dir, root) {
		t.Errorf("LiveDir(live) = %q, %v", dir, err)
	}
	for _, c := range []struct{ name, want string }{
		{"../x", ""},
		{"nosuch", `no VM named "nosuch" is running`},
		{"stale", `no VM named "stale" is running`},
	} {
		if _, err := LiveDir(root, c.name); exitcode.Of(err) != exitcode.Usage || !strings.Contains(errString(err), c.want) {
			t.Errorf("LiveDir(%q): %v (exit %d)", c.name, err, exitcode.Of(err))
		}
	}
	for _, c := range []struct{ name, want string }{
		{"../x", ""},
		{"nosuch", `no VM named "nosuch" is running`},
		{"stale", "its vmrun was killed"},
	} {
		if err := Stop(root, c.name, false, 0); exitcode.Of(err) != exitcode.Usage || !strings.Contains(errString(err), c.want) {
			t.Errorf("Stop(%q): %v (exit %d)", c.name, err, exitcode.Of(err))
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
