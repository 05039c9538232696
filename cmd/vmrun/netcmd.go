package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
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
		Usage:        "network helpers: `vmrun net plan` shows what --net auto would do, and why; `vmrun net forget` forgets what it remembered",
		OnUsageError: usageError,
		Subcommands: []*cli.Command{{
			Name:      "plan",
			Usage:     "print the network attachment vmrun would use here, and why; creates nothing",
			UsageText: "vmrun net plan [--net MODE[:INTERFACE]] [--uplink INTERFACE] [--name NAME] [--json] [--watch]",
			Description: `With --watch, vmrun keeps listening to the host's network (routes, links,
addresses, Wi-Fi association) and prints one line each time a running VM
with --follow-uplink would re-plan: the time, what it would do (renew:
the same attachment, the guest's carrier toggled; reattach: same mode,
rebuilt and re-registered; switch: another attachment; park: no uplink),
from → to, and why — until Ctrl-C. It creates nothing. The first line is the
plan it starts from. With --json, each line is one JSON object
(docs/json.md). Attach its output to a bug report about a VM that lost its
network when the host's did something.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "net", Value: "auto", Usage: "network `MODE[:INTERFACE]` to plan"},
				&cli.StringFlag{Name: "uplink", Usage: "plan for this `INTERFACE` instead of the default-route one"},
				&cli.StringFlag{Name: "name", Value: "vm", Usage: "VM `NAME` (decides the default MAC and link names)"},
				&cli.StringFlag{Name: "mac", Usage: "guest `MAC` instead of the one derived from --name"},
				&cli.IntFlag{Name: "cpus", Value: 1, Usage: "vCPUs (one queue each)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				&cli.BoolFlag{Name: "watch", Usage: "keep watching the host's network and print each re-plan a running VM would make, one line each, until Ctrl-C"},
			},
			OnUsageError: usageError,
			Action:       planAction,
		}, {
			Name:      "forget",
			Usage:     "forget what --net auto remembered about the network the host is on (or, with --all, every network), so the next run tries its first choice again",
			UsageText: "vmrun net forget [--all]",
			Description: `--net auto remembers, per network (its gateway's MAC, and the SSID on Wi-Fi), when the guest had
to leave its first choice because the LAN did not answer its DHCP, and the
next run there starts in the mode that worked (vmrun net plan says
"remembered: ..."). The file: ` + "$XDG_STATE_HOME/vmrun/networks.json, else /var/lib/vmrun/networks.json for root, ~/.local/state/vmrun/networks.json for others (VMRUN_STATE_DIR overrides the directory)" + `.`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "all", Usage: "forget every network"},
			},
			OnUsageError: usageError,
			Action:       forgetAction,
		}},
	}
}

// forgetAction is `vmrun net forget`: one line per network forgotten.
func forgetAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitcode.Usagef("unexpected argument %q (see `vmrun net forget --help`)", c.Args().First())
	}
	return netplan.Forget(c.Context, c.App.Writer, c.Bool("all"))
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
	if c.Bool("watch") {
		ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		defer stop()
		return netplan.Watch(ctx, c.App.Writer, planRequest(spec), c.Bool("json"))
	}
	plan, err := netplan.Plan(c.Context, planRequest(spec))
	if err != nil {
		return err
	}
	return plan.Write(c.App.Writer, c.Bool("json"))
}
