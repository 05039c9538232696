package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/vmctl"
)

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list running VMs (name, pid, network mode, MAC, the guest's addresses, uptime)",
		UsageText: "vmrun ls [--json]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			infos, err := vmctl.List(rundir.Root())
			if err != nil {
				return err
			}
			return vmctl.WriteList(c.App.Writer, infos, c.Bool("json"))
		},
	}
}

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop a running VM: power it off gracefully (or at once with --force) and wait until it is gone",
		UsageText: "vmrun stop NAME [--force] [--wait DURATION]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "do not wait for the guest to power off: stop QEMU at once"},
			&cli.DurationFlag{Name: "wait", Value: 0, Usage: "give up waiting after `DURATION` (default: wait until it is gone)"},
		},
		OnUsageError: usageError,
		Action:       stopAction,
	}
}

func stopAction(c *cli.Context) error {
	name, force, wait, err := vmctl.StopArgs(c.Args().Slice(), c.Bool("force"), c.Duration("wait"))
	if err != nil {
		return err
	}
	if err := vmctl.Stop(rundir.Root(), name, force, wait); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "vmrun: VM %q stopped\n", name)
	return nil
}
