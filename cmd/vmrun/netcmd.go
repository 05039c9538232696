package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/gc"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove what killed vmrun processes left behind (links, state, runtime directories) — and only that",
		Description: `Looks at every VM runtime directory that no running vmrun holds, kills
that VM's QEMU (and passt) if it still runs from there, deletes the links it
recorded (only links carrying vmrun's alias for that VM), restores the
sysctls it changed, and removes the directory. A dead NAT VM leaves the NAT
network; when no live one is left, the bridge vmrnat0, the nftables table
vmrun and the forwarding sysctl go too. Running VMs are never touched.`,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			notify := notifier(c)
			removed, err := gc.GC(rundir.Root(), notify)
			for _, name := range removed {
				fmt.Fprintf(c.App.Writer, "removed the leftovers of VM %q\n", name)
			}
			if err != nil {
				return exitcode.Setupf("gc could not remove everything: %w", err)
			}
			if len(removed) == 0 {
				fmt.Fprintln(c.App.Writer, "nothing to clean up")
			}
			return nil
		},
	}
}

func netCommand() *cli.Command {
	return &cli.Command{
		Name:         "net",
		Usage:        "network helpers: `vmrun net plan` shows what --net auto would do, and why",
		OnUsageError: usageError,
		Subcommands: []*cli.Command{{
			Name:      "plan",
			Usage:     "print the network attachment vmrun would use here, and why; creates nothing",
			UsageText: "vmrun net plan [--net MODE[:INTERFACE]] [--uplink INTERFACE] [--name NAME] [--json]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "net", Value: "auto", Usage: "network `MODE[:INTERFACE]` to plan"},
				&cli.StringFlag{Name: "uplink", Usage: "plan for this `INTERFACE` instead of the default-route one"},
				&cli.StringFlag{Name: "name", Value: "vm", Usage: "VM `NAME` (decides the default MAC and link names)"},
				&cli.StringFlag{Name: "mac", Usage: "guest `MAC` instead of the one derived from --name"},
				&cli.IntFlag{Name: "cpus", Value: 1, Usage: "vCPUs (one queue each)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			},
			OnUsageError: usageError,
			Action:       planAction,
		}},
	}
}

func planAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitcode.Usagef("unexpected argument %q (see `vmrun net plan --help`)", c.Args().First())
	}
	cfg := config.Defaults()
	cfg.Net, cfg.Uplink, cfg.Name, cfg.MAC, cfg.CPUs = c.String("net"), c.String("uplink"), c.String("name"), c.String("mac"), c.Int("cpus")
	cfg.Kernel = "/dev/null" // planning needs no boot source
	spec, err := cfg.Resolve()
	if err != nil {
		return exitcode.Wrap(exitcode.Usage, err)
	}
	plan, err := planNetwork(c.Context, spec)
	if err != nil {
		return err
	}
	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	switch {
	case plan.Mode == netsetup.None:
		fmt.Fprintf(out, "uplink:  not looked at (no network)\n")
	case plan.Uplink == "":
		fmt.Fprintf(out, "uplink:  none (%s)\n", plan.UplinkKind)
	default:
		fmt.Fprintf(out, "uplink:  %s (%s)\n", plan.Uplink, plan.UplinkKind)
	}
	fmt.Fprintf(out, "mode:    %s", plan.Mode)
	if plan.Parent != "" {
		fmt.Fprintf(out, " on %s", plan.Parent)
	}
	if plan.Passt != "" {
		fmt.Fprintf(out, " through passt (%s)", plan.Passt)
	}
	if plan.MAC != nil {
		fmt.Fprintf(out, "\nmac:     %s", plan.MAC)
	}
	fmt.Fprintf(out, "\nvhost:   %v\nwhy:     %s\n", plan.Vhost, plan.Reason)
	if plan.Notice != "" {
		fmt.Fprintf(out, "note:    %s\n", plan.Notice)
	}
	return nil
}
