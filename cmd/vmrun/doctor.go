package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/hostcheck"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
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
	r.Auto, r.OK = autoVerdict(c.Context)
	if err := r.Write(c.App.Writer, c.Bool("json")); err != nil {
		return err
	}
	if !r.OK {
		return exitcode.Wrap(exitcode.Usage, exitcode.ErrSilent)
	}
	return nil
}

// autoVerdict plans --net auto here: ok when it is a layer-2 mode.
func autoVerdict(ctx context.Context) (hostcheck.Auto, bool) {
	cfg := config.Defaults()
	cfg.Kernel, cfg.Name = "/dev/null", "doctor"
	spec, err := cfg.Resolve()
	if err == nil {
		var p netsetup.Plan
		if p, err = netplan.Plan(ctx, planRequest(spec)); err == nil {
			a := hostcheck.Auto{Mode: string(p.Mode), Parent: p.Parent, Reason: p.Reason, Notice: p.Notice}
			switch p.Mode {
			case netsetup.Bridge, netsetup.Macvtap, netsetup.IPVtap:
				return a, true
			}
			return a, false
		}
	}
	return hostcheck.Auto{Mode: "none", Reason: oneLine(err.Error())}, false
}
