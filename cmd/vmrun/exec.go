package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/guestexec"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/vmctl"
	"github.com/vmrun/vmrun/launcher"
)

// execCommand is `vmrun exec` in the command tree: for `vmrun --help`, and
// when global flags come first (`vmrun -v exec ...`); realMain runs
// `vmrun exec ...` through execMain directly.
func execCommand() *cli.Command {
	return &cli.Command{
		Name:            "exec",
		Usage:           guestexec.Usage,
		UsageText:       guestexec.UsageText,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return execMain(c.Context, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

// execMain is `vmrun exec ARGS...`.
func execMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a, err := guestexec.ParseArgs(args)
	if err != nil {
		return err
	}
	if a.Help {
		fmt.Fprintf(stdout, "NAME:\n   vmrun exec - %s\n\nUSAGE:\n   %s\n\nSee docs/exec.md.\n", guestexec.Usage, guestexec.UsageText)
		return nil
	}
	dir, err := vmctl.LiveDir(rundir.Root(), a.Name)
	if err != nil {
		return err
	}
	notify := func(format string, args ...any) {
		fmt.Fprintf(stderr, "vmrun: "+format+"\n", args...)
	}
	streams := guestexec.Streams{Stdin: stdinUnlessTerminal(), Stdout: stdout, Stderr: stderr}
	ctx, leave, stop := execStops(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- guestexec.Run(ctx, dir, a, streams, notify) }()
	select {
	case err := <-errc:
		return err
	case <-leave:
		return exitcode.Setupf("interrupted twice: left without waiting for %s in VM %q, which may still run there", a.Argv[0], a.Name)
	}
}

// execStops catches `vmrun exec`'s stop signals: the first SIGINT, SIGTERM
// or SIGHUP ends ctx (the command is sent SIGTERM and its end awaited);
// a SIGINT after that (Ctrl-C again) closes leave. Only SIGINT counts
// twice: `timeout` sends SIGTERM to its command and then to the command's
// process group, which must not be taken for a second request.
func execStops(parent context.Context) (ctx context.Context, leave <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	left, done := make(chan struct{}), make(chan struct{})
	go followStops(sigc, cancel, left, done)
	return ctx, left, func() {
		signal.Stop(sigc)
		close(done)
		cancel()
	}
}

// followStops is execStops' reader of sigc: the first signal calls cancel,
// a SIGINT after it closes left; it returns then or when done closes.
func followStops(sigc <-chan os.Signal, cancel func(), left chan<- struct{}, done <-chan struct{}) {
	select {
	case <-sigc:
		cancel()
	case <-done:
		return
	}
	for {
		select {
		case s := <-sigc:
			if s == syscall.SIGINT {
				close(left)
				return
			}
		case <-done:
			return
		}
	}
}

// stdinUnlessTerminal is vmrun's stdin for a guest command: nil (the
// command gets /dev/null) when it is a terminal.
func stdinUnlessTerminal() io.Reader {
	if isTerminal(os.Stdin) {
		return nil
	}
	return os.Stdin
}

// oneShotExec sets opts up for --exec: the command's output goes to
// vmrun's stdout and stderr.
func oneShotExec(c *cli.Context, spec config.Spec, dir string, tail *linetail.Tail, opts *launcher.Options) {
	guestexec.OneShot{
		Dir: dir, Argv: spec.Exec, Timeout: spec.Timeout, Timestamps: spec.Timestamps,
		Streams: guestexec.Streams{Stdin: stdinUnlessTerminal(), Stdout: c.App.Writer, Stderr: c.App.ErrWriter},
		Booted:  tail.Any, Verbose: c.Bool("verbose"), Notify: notifier(c),
	}.Install(opts)
}
