package main

import (
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// TestDetachBadInput: what --detach cannot do is a usage error given
// before anything starts, and the dry run of a detached VM has no serial
// console on stdio.
func TestDetachBadInput(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	d := disk(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-d", "--disk", d, "--net", "none", "--exec", "--", "true"}, "--detach cannot be combined with --exec"},
		{[]string{"--detach", "--disk", d, "--net", "none", "--console", "serial", "--dry-run"}, "vmrun console NAME"},
	} {
		_, errOut, code := vmrun(t, tc.args...)
		if code != exitcode.Usage || !strings.Contains(errOut, tc.msg) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", tc.args, code, errOut, tc.msg)
		}
	}
	argv := strings.Join(dryArgv(t, "-d", "--disk", d, "--net", "none"), " ")
	if !strings.Contains(argv, "-display none") {
		t.Errorf("detached dry run shows a console:\n%s", argv)
	}
}

// TestConsoleLogsBadInput: console and logs need the name of a running VM
// that was started with --detach.
func TestConsoleLogsBadInput(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	for _, verb := range []string{"console", "logs"} {
		for _, tc := range []struct {
			args []string
			msg  string
		}{
			{nil, "takes one VM name"},
			{[]string{"a", "b"}, "takes one VM name"},
			{[]string{"nosuch"}, `no VM named "nosuch" is running`},
		} {
			_, errOut, code := vmrun(t, append([]string{verb}, tc.args...)...)
			if code != exitcode.Usage || !strings.Contains(errOut, tc.msg) {
				t.Errorf("%s %q: exit %d, stderr %q; want 1 and %q", verb, tc.args, code, errOut, tc.msg)
			}
		}
	}
	// A running VM (its lock held) that was not detached.
	d, _, err := rundir.Create(root, "fg")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, args := range [][]string{{"console", "fg"}, {"logs", "fg"}, {"logs", "fg", "-f"}} {
		_, errOut, code := vmrun(t, args...)
		if code != exitcode.Usage || !strings.Contains(errOut, "was not started with --detach") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
}
