package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/guestwait"
	"github.com/vmrun/vmrun/internal/rundir"
)

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:  "wait",
		Usage: "wait until a running VM's guest has an address (--for address) or an SSH server answers on TCP port 22 of one (--for ssh), and print that address",
		UsageText: "vmrun wait NAME [--for address|ssh] [--timeout DURATION]\n\n" +
			"Exits 0 with the address on stdout (--for ssh on a user-mode guest with a cloud-init seed: 127.0.0.1:PORT, vmrun's forward to its port 22); " +
			"124 when --timeout passed first; 2 when the VM stopped first; 1 when no such VM runs.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "for", Value: "address", Usage: "`WHAT` to wait for: address, or ssh"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION` (default: wait as long as the VM runs)"},
		},
		OnUsageError: usageError,
		Action:       waitAction,
	}
}

func waitAction(c *cli.Context) error {
	name, what, timeout, err := guestwait.ParseArgs(c.Args().Slice(), c.String("for"), c.Duration("timeout"))
	if err != nil {
		return err
	}
	a, err := guestwait.For(rundir.Root(), name, what == "ssh", timeout)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, a)
	return nil
}
