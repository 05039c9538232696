package main

import (
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/guestssh"
	"github.com/vmrun/vmrun/internal/rundir"
)

// sshDefaultTimeout bounds `vmrun ssh`'s wait for the guest's SSH server.
const sshDefaultTimeout = 2 * time.Minute

func sshCommand() *cli.Command {
	return &cli.Command{
		Name:  "ssh",
		Usage: "log into a running VM's guest with the system's ssh, or run CMD there, once its SSH server answers",
		UsageText: "vmrun ssh NAME [--timeout DURATION] [-- CMD...]\n\n" +
			"Waits (at most --timeout, default 2m) until port 22 answers on the guest's learnt address, or an SSH server on the host end of " +
			"the forward vmrun adds to its port 22 in user mode (no wait once a login of this run succeeded), then runs ssh as the user " +
			"of the guest's cloud-init seed (named after you) with its key, checking the host key against the VM's own known_hosts (accept-new). " +
			"Exits with ssh's code (255: ssh could not connect or log in); 124 when --timeout passed first; 2 when the VM stopped first; " +
			"1 when no such VM runs or ssh is not installed.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: sshDefaultTimeout, Usage: "give up waiting for the guest's SSH server after `DURATION`"},
		},
		OnUsageError: usageError,
		Action:       sshAction,
	}
}

func sshAction(c *cli.Context) error {
	name, timeout, cmd, err := guestssh.ParseArgs(c.Args().Slice(), c.Duration("timeout"))
	if err != nil {
		return err
	}
	return guestssh.Run(rundir.Root(), name, timeout, cmd, c.App.ErrWriter, isTerminal(os.Stderr))
}

// sshFast reports whether realMain may run `vmrun ssh` (args are vmrun's
// own) through sshMain, without the command tree: when the VM's name comes
// first. Help, and --timeout before the name, go through the tree.
func sshFast(args []string) bool {
	return len(args) > 2 && args[1] == "ssh" && !strings.HasPrefix(args[2], "-") && args[2] != "h" && !helpMayShow(args)
}

// sshMain is `vmrun ssh NAME [--timeout DUR] [-- CMD...]` straight from
// realMain: building the command tree (every command's flags, defaults
// and help) would add to every login's start (BenchmarkSSH); what the tree
// would parse for it, ParseArgs does.
func sshMain(args []string, stderr io.Writer) error {
	name, timeout, cmd, err := guestssh.ParseArgs(args, sshDefaultTimeout)
	if err != nil {
		return err
	}
	return guestssh.Run(rundir.Root(), name, timeout, cmd, stderr, isTerminal(os.Stderr))
}
