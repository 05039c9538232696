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
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	notify := func(format string, args ...any) {
		fmt.Fprintf(stderr, "vmrun: "+format+"\n", args...)
	}
	streams := guestexec.Streams{Stdin: stdinUnlessTerminal(), Stdout: stdout, Stderr: stderr}
	return guestexec.Run(ctx, dir, a, streams, notify)
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
