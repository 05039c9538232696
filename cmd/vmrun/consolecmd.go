package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/console"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/vmctl"
)

// detachedVMFile returns the file base in the runtime directory of the
// running, detached VM named by the command's one argument.
func detachedVMFile(c *cli.Context, base string) (name, dir string, err error) {
	args := c.Args().Slice()
	if c.Command.Name == "logs" && len(args) == 2 && (args[1] == "-f" || args[1] == "--follow") {
		// `vmrun logs NAME -f`: the flag parser stops at NAME.
		args = args[:1]
		_ = c.Set("follow", "true")
	}
	if len(args) != 1 {
		return "", "", exitcode.Usagef("vmrun %s takes one VM name (see `vmrun ls`)", c.Command.Name)
	}
	dir, err = vmctl.DetachedDir(rundir.Root(), args[0], base)
	return args[0], dir, err
}

func consoleCommand() *cli.Command {
	return &cli.Command{
		Name:      "console",
		Usage:     "attach to the serial console of a VM started with --detach; detach with Ctrl-]",
		UsageText: "vmrun console NAME",
		Description: "Copies the terminal to the guest's serial port and its output to the terminal, in raw\n" +
			"mode (Ctrl-C goes to the guest), until Ctrl-] or the end of the input; one client at a time.",
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			name, dir, err := detachedVMFile(c, console.Socket)
			if err != nil {
				return err
			}
			return vmctl.AttachConsole(name, dir, os.Stdin, c.App.Writer, c.App.ErrWriter, notifier(c))
		},
	}
}

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:         "logs",
		Usage:        "print the serial console log of a VM started with --detach (running, or its last run)",
		UsageText:    "vmrun logs NAME [-f|--follow]",
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing what the guest writes, until the VM stops or Ctrl-C"}},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			_, dir, err := detachedVMFile(c, console.Log)
			if err != nil {
				return vmctl.PrintLastLog(rundir.Root(), c.Args().First(), supervisorLog, c.App.Writer, c.App.ErrWriter, err)
			}
			if c.Bool("follow") {
				ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
				defer stop()
				if err := console.Follow(ctx, dir, c.App.Writer); err != nil {
					return exitcode.Setupf("%w", err)
				}
				return nil
			}
			return vmctl.CatLog(c.App.Writer, filepath.Join(dir, console.Log))
		},
	}
}
