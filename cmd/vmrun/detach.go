package main

import (
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/console"
	"github.com/vmrun/vmrun/internal/detach"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/launcher"
)

// supervisorLog is where a detached supervisor's own output goes once the
// VM runs, in its runtime directory.
const supervisorLog = "vmrun.log"

// startDetached is `vmrun --detach`: the same command runs again as a
// supervisor of its own; this one prints the VM's name once it runs, or
// exits with the supervisor's code when the start failed.
func startDetached(c *cli.Context) error {
	if c.Bool("exec") {
		return exitcode.Usagef("--detach cannot be combined with --exec: start the VM with --detach, then run the command with `vmrun exec NAME -- CMD`")
	}
	name, code, err := detach.Start(os.Args[1:], stopSignals, c.App.Writer, c.App.ErrWriter)
	if err != nil {
		return exitcode.Setupf("--detach: %w", err)
	}
	if name == "" {
		return exitcode.Pass(code)
	}
	_, err = io.WriteString(c.App.Writer, name+"\n")
	return err
}

// detached is the state of a detached supervisor: its readiness pipe, and
// the console it serves.
type detached struct {
	*detach.Supervisor
	server *console.Server
}

// detachedConsole opens the console log and serves the console on its
// socket, both in the runtime directory; it returns where the console's
// output goes.
func (s *session) detachedConsole() (io.Writer, error) {
	f, err := os.OpenFile(filepath.Join(s.dir.Path, console.Log), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, exitcode.Setupf("console log: %w", err)
	}
	s.undo.Push("console log", f.Close)
	sock, err := s.dir.Socket(console.Socket)
	if err != nil {
		return nil, exitcode.Setupf("%w", err)
	}
	srv, err := console.Serve(sock)
	if err != nil {
		return nil, exitcode.Setupf("%w", err)
	}
	s.undo.Push("console socket", srv.Close)
	s.det.server = srv
	// A full disk ends the log, not the console's other destinations.
	log := launcher.Lossy(f, func(err error) {
		s.notify("the console log %s could not be written (%v): it ends here; the VM keeps running", f.Name(), err)
	})
	return io.MultiWriter(log, srv), nil
}

// detachOptions gives QEMU the console's input, and tells `vmrun --detach`
// when the guest runs (QMP is ready and its NIC plugged in): from then on
// the supervisor's output goes to its log.
func (s *session) detachOptions(opts *launcher.Options) {
	opts.Input = s.det.server.Input()
	running := opts.Running
	opts.Running = func() {
		running()
		s.det.Ready(filepath.Join(s.dir.Path, supervisorLog), s.spec.Name)
	}
}
