package main

import (
	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/hostcheck"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check what this host offers vmrun, and say how to fix what is missing",
		UsageText: "vmrun doctor [--json]",
		Description: `Checks QEMU, /dev/kvm, /dev/vhost-net, whether tap, bridge, macvtap and
ipvtap links and nftables tables can be created (tried in a throwaway
network namespace), passt, a firewall that drops forwarded packets,
NetworkManager, the runtime directory and leftovers of killed vmruns.
Prints one line per problem with its fix. Exit status 0 when --net auto
can use a layer-2 mode here (bridge, macvtap or ipvtap), 1 otherwise.`,
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}},
		OnUsageError: usageError,
		Action:       doctorAction,
	}
}

func doctorAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitcode.Usagef("unexpected argument %q (see `vmrun doctor --help`)", c.Args().First())
	}
	r := hostcheck.Report{Checks: hostcheck.Run(rundir.Root())}
	r.Auto, r.OK = netplan.AutoVerdict(c.Context, limits())
	if err := r.Write(c.App.Writer, c.Bool("json")); err != nil {
		return err
	}
	if !r.OK {
		return exitcode.Wrap(exitcode.Usage, exitcode.ErrSilent)
	}
	return nil
}
