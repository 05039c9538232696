package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// TestCatchStopsEarly: a run catches its stop signals from main on and
// takes that catch (takeStops returns its channel); a command, a help
// request, or a command given after the run's options gets the signals
// back.
func TestCatchStopsEarly(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		early bool
	}{
		{[]string{"vmrun", "--disk", "a.qcow2"}, true},
		{[]string{"vmrun", "run", "--disk", "a.qcow2"}, true},
		{[]string{"vmrun"}, true},
		{[]string{"vmrun", "ls"}, false},
		{[]string{"vmrun", "exec", "web", "--", "true"}, false},
		{[]string{"vmrun", "--disk", "a.qcow2", "--help"}, false},
		{[]string{"vmrun", "run", "-h"}, false},
	} {
		app := newApp(io.Discard, io.Discard)
		e := catchStopsEarly(app, tc.args)
		if (e != nil) != tc.early {
			t.Errorf("%q: early catch %v, want %v", tc.args, e != nil, tc.early)
		}
		if e != nil {
			// The run takes the early catch rather than making its own.
			if got, _ := takeStops(cli.NewContext(app, nil, nil)); got != e.c {
				t.Errorf("%q: the run did not take the early catch", tc.args)
			}
			signal.Stop(e.c)
		}
	}
	// A command after the run's options releases the catch in Before.
	app := newApp(io.Discard, io.Discard)
	for _, cmd := range app.Commands {
		if cmd.Name == "ls" {
			cmd.Action = nil
			cmd.Before = nil
		}
	}
	args := []string{"vmrun", "--verbose", "ls", "--json"}
	e := catchStopsEarly(app, args)
	if e == nil {
		t.Fatal("no early catch for options before a command")
	}
	_ = app.Run(args)
	if !e.taken {
		t.Error("vmrun --verbose ls: the early catch was not released")
	}
	e.release()
}

// A run whose standard streams are pipes nobody reads any more is not
// killed by SIGPIPE (it would leave what it created behind): here a run
// refused for a missing disk writes its one error line to such a stderr
// and still exits with its documented code. (test/e2e's
// TestBrokenConsolePipe breaks the console's pipe of a booting VM.)
func TestRunSurvivesBrokenPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	cmd := vmrunProcess(context.Background(), nil, "--disk", "/nonexistent/a.qcow2")
	cmd.Env = append(cmd.Env, rundir.EnvRoot+"="+t.TempDir())
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); ok && ws.Signaled() {
		t.Fatalf("vmrun was killed by a signal (%v) writing to a closed pipe", err)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitcode.Usage {
		t.Fatalf("exit code %d (%v), want %d", code, err, exitcode.Usage)
	}
}
