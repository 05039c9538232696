package guestexec

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/stamp"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/qga"
	"github.com/vmrun/vmrun/qmp"
)

// OneShot is a run's --exec: once the guest runs, wait for its agent
// (bounded by Timeout, or defaultAgentWait), run Argv with its output on
// Stdout and Stderr, and let the supervisor power the guest off and exit
// with the command's code.
type OneShot struct {
	Dir     string // the VM's runtime directory
	Argv    []string
	Timeout time.Duration // the run's --timeout; 0: none
	// Timestamps prefixes each output line with the UTC time.
	Timestamps bool
	Streams
	// Booted reports whether the guest wrote anything on its serial
	// console, for the diagnosis when the agent never answers.
	Booted func() bool
	// Verbose says when the agent answered.
	Verbose bool
	Notify  func(string, ...any)
}

// Install sets opts up to run o: it watches the agent's port opening in
// opts.Event and sets opts.Exec. Stdin is read while the guest boots (a CI
// job's stdin is usually /dev/null or a file).
func (o OneShot) Install(opts *launcher.Options) {
	var agentOpened atomic.Bool
	prev := opts.Event
	opts.Event = func(ev qmp.Event) {
		if open, _ := ev.Data["open"].(bool); ev.Name == eventVserport && ev.String("id") == launcher.AgentPortID && open {
			agentOpened.Store(true)
		}
		if prev != nil {
			prev(ev)
		}
	}
	type input struct {
		b   []byte
		err error
	}
	stdinc := make(chan input, 1)
	go func() {
		b, err := readStdin(o.Stdin)
		stdinc <- input{b, err}
	}()
	out, errw := o.Stdout, o.Stderr
	if o.Timestamps {
		out, errw = stamp.NewWriter(out), stamp.NewWriter(errw)
	}
	opts.Exec = func(ctx context.Context) (int, error) {
		client, err := o.waitAgent(ctx, agentOpened.Load)
		if err != nil {
			return 0, err
		}
		defer client.Close()
		var in input
		select {
		case in = <-stdinc:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if in.err != nil {
			return 0, in.err
		}
		return o.run(ctx, client, in.b, out, errw)
	}
}

// waitAgent waits for the guest agent; opened says whether the guest
// opened the agent's port.
func (o OneShot) waitAgent(ctx context.Context, opened func() bool) (*qga.Client, error) {
	wait := defaultAgentWait
	if o.Timeout > 0 {
		// A little less than --timeout, so that the agent's absence is
		// what gets reported, not the time-out.
		wait = o.Timeout - min(o.Timeout/10, time.Second)
	}
	t0 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, wait)
	client, err := qga.WaitAgent(wctx, filepath.Join(o.Dir, agentSock))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, exitcode.Wrap(exitcode.Setup, agentDiagnosis(wait, o.Booted(), opened(), err))
	}
	if o.Verbose {
		o.Notify("guest agent answered %.2fs after the guest started", time.Since(t0).Seconds())
	}
	return client, nil
}

// run runs the command through client and returns its exit code.
func (o OneShot) run(ctx context.Context, client *qga.Client, stdin []byte, out, errw io.Writer) (int, error) {
	sout, serr := &sink{w: out}, &sink{w: errw}
	res, err := client.Run(ctx, ports(o.Dir), qga.Command{Argv: o.Argv, Stdin: stdin, Stdout: sout, Stderr: serr})
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if errors.Is(err, qga.ErrAgent) {
			return 0, exitcode.Setupf("--exec: %w", err)
		}
		if werr := cmp.Or(sout.failed(), serr.failed()); werr != nil {
			if errors.Is(werr, syscall.EPIPE) {
				// vmrun ... --exec CMD | head: the reader has what it wanted.
				return 0, exitcode.Setupf("--exec: %s's output could not be written, its reader has gone (%w): the guest is powered off", o.Argv[0], werr)
			}
			return 0, exitcode.Setupf("--exec: %s's output could not be written (%w): the guest is powered off", o.Argv[0], werr)
		}
		return 0, exitcode.Setupf("--exec: the guest agent could not run the command: %w", err)
	}
	reportTruncated(o.Notify, res)
	return res.Code, nil
}

// eventVserport is QMP's event for a guest opening or closing a
// virtio-serial port.
const eventVserport = "VSERPORT_CHANGE"

// agentDiagnosis names what never came up: the guest, the agent, or the
// agent's answer.
func agentDiagnosis(wait time.Duration, booted, opened bool, cause error) error {
	switch {
	case !booted:
		return fmt.Errorf("%w within %s: the guest never booted (nothing on its serial console); check the disk image and the boot messages with --console serial", ErrAgentNotUp, wait)
	case !opened:
		return fmt.Errorf("%w within %s: the guest booted but no agent opened the %s port; install and start qemu-guest-agent in the guest (it needs the virtio_console driver), or raise --timeout", ErrAgentNotUp, wait, launcher.AgentPortName)
	}
	return fmt.Errorf("%w within %s: the agent opened its port but did not answer guest-sync (%w)", ErrAgentNotUp, wait, cause)
}

// sink is where the command's output goes (vmrun's stdout or stderr),
// remembering its first failed write: a failure of vmrun's own output,
// told apart from one of the agent's connection, which may fail with the
// same errno.
type sink struct {
	w   io.Writer
	err atomic.Pointer[error]
}

func (s *sink) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		s.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// failed returns the first write error, or nil.
func (s *sink) failed() error {
	if e := s.err.Load(); e != nil {
		return *e
	}
	return nil
}
