package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// TestSessionDetach: detach unwinds the one undo stack in reverse, then
// removes the runtime directory only when every undo succeeded; a failed
// undo keeps it (for vmrun gc), is reported, and becomes the run's error
// when the run had none — without hiding an error the run already had.
func TestSessionDetach(t *testing.T) {
	boom := errors.New("boom")
	runErr := exitcode.Wrap(exitcode.QEMUDied, errors.New("QEMU died"))
	cases := []struct {
		name     string
		undoErr  error
		runErr   error
		wantCode int
		wantDir  bool
	}{
		{"clean", nil, nil, exitcode.OK, false},
		{"undo fails", boom, nil, exitcode.Setup, true},
		{"undo fails after a failed run", boom, runErr, exitcode.QEMUDied, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			var notes []string
			s := &session{root: root, spec: config.Spec{Name: "vm"}, step: func(string, ...any) {},
				notify: func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }}
			if err := s.lock(); err != nil {
				t.Fatal(err)
			}
			var ran []string
			s.undo.Push("first", func() error { ran = append(ran, "first"); return nil })
			s.undo.Push("second", func() error { ran = append(ran, "second"); return tc.undoErr })
			err := s.detach(tc.runErr)
			if want := []string{"second", "first"}; !reflect.DeepEqual(ran, want) {
				t.Errorf("undos ran %v, want %v", ran, want)
			}
			if got := exitcode.Of(err); got != tc.wantCode {
				t.Errorf("exit code %d (%v), want %d", got, err, tc.wantCode)
			}
			if tc.undoErr != nil && (len(notes) != 1 || !strings.Contains(notes[0], "clean-up was incomplete") || !strings.Contains(notes[0], "undo second: boom")) {
				t.Errorf("notices %q, want one naming the failed undo", notes)
			}
			if tc.undoErr == nil && len(notes) != 0 {
				t.Errorf("notices %q after a clean detach", notes)
			}
			if _, serr := os.Stat(s.dir.Path); (serr == nil) != tc.wantDir {
				t.Errorf("runtime directory exists: %v, want %v", serr == nil, tc.wantDir)
			}
			// The lock is released either way: the name can be run again.
			d, _, err := rundir.Create(root, "vm")
			if err != nil {
				t.Fatalf("after detach: %v", err)
			}
			_ = d.Remove()
		})
	}
}

// TestSessionLockBusy: a second session of a running name is a usage
// error that leaves the first one's directory alone.
func TestSessionLockBusy(t *testing.T) {
	root := t.TempDir()
	first, _, err := rundir.Create(root, "vm")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Remove()
	s := &session{root: root, spec: config.Spec{Name: "vm"}, notify: func(string, ...any) {}}
	err = s.lock()
	if exitcode.Of(err) != exitcode.Usage || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("lock = %v (code %d), want a usage error saying it runs", err, exitcode.Of(err))
	}
	if _, err := os.Stat(first.Path); err != nil {
		t.Fatalf("the running VM's directory: %v", err)
	}
}
