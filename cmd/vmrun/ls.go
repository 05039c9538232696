package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/vmctl"
)

// vmInfo is one line of `vmrun ls`.
type vmInfo struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	QEMUPID int    `json:"qemu_pid"`
	Net     string `json:"net"`
	Parent  string `json:"parent"`
	// Uplink is the host interface the current attachment was decided
	// for; "" when there is none.
	Uplink string `json:"uplink"`
	MAC    string `json:"mac"`
	// Switches counts the moves of the running guest to another
	// attachment (Net is the current one's mode).
	Switches int        `json:"switches"`
	Started  *time.Time `json:"started"` // null when unknown
	Uptime   string     `json:"uptime"`
	Status   string     `json:"status"` // running, or stale (left by a killed vmrun)
	// Addresses are the guest's learnt addresses; null when none.
	Addresses []addrInfo `json:"addresses"`
}

// addrInfo is one of the guest's addresses in `vmrun ls --json`.
type addrInfo struct {
	Addr   string    `json:"addr"`
	Source string    `json:"source"` // dhcp, arp, ndp, traffic, static, user
	Server string    `json:"server"` // the DHCP server that granted it; "" when none
	Learnt time.Time `json:"learnt"`
}

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
			root := rundir.Root()
			entries, err := rundir.List(root)
			if err != nil {
				return exitcode.Setupf("cannot list %s: %w", root, err)
			}
			infos := make([]vmInfo, 0, len(entries))
			for _, e := range entries {
				infos = append(infos, info(e))
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(infos)
			}
			if len(infos) == 0 {
				fmt.Fprintln(c.App.Writer, "no VMs are running")
				return nil
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPID\tNET\tMAC\tADDRESSES\tUPTIME\tSTATUS")
			for _, i := range infos {
				net := i.Net
				if i.Parent != "" {
					net += ":" + i.Parent
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", i.Name, i.PID, net, i.MAC, addrColumn(i.Addresses), i.Uptime, i.Status)
			}
			return tw.Flush()
		},
	}
}

func info(e rundir.Entry) vmInfo {
	i := vmInfo{Name: e.Name, Status: "running"}
	if !e.Live {
		i.Status = "stale (run `vmrun gc`)"
	}
	if e.State != nil {
		i.PID, i.QEMUPID, i.Net, i.Parent, i.Uplink, i.MAC, i.Switches =
			e.State.PID, e.State.QEMUPID, e.State.Mode, e.State.Parent, e.State.Uplink, e.State.MAC, e.State.Switches
		for _, a := range e.State.Addresses {
			i.Addresses = append(i.Addresses, addrInfo{Addr: a.Addr, Source: a.Source, Server: a.Server, Learnt: a.Learnt})
		}
		if started := e.State.Started; !started.IsZero() {
			i.Started = &started
			if e.Live {
				i.Uptime = time.Since(started).Round(time.Second).String()
			}
		}
	}
	return i
}

// addrColumn is the ADDRESSES column: each address with its source in
// brackets, "-" when none is known yet.
func addrColumn(as []addrInfo) string {
	if len(as) == 0 {
		return "-"
	}
	parts := make([]string, len(as))
	for k, a := range as {
		parts[k] = a.Addr + "(" + a.Source + ")"
	}
	return strings.Join(parts, ",")
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
	name, force, wait, err := stopArgs(c)
	if err != nil {
		return err
	}
	if err := vmctl.Stop(rundir.Root(), name, force, wait); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "vmrun: VM %q stopped\n", name)
	return nil
}

// stopArgs returns stop's VM name and options, which may also follow the
// name as documented (`vmrun stop NAME --force`): the flag parser stops at
// the first argument that is not a flag.
func stopArgs(c *cli.Context) (name string, force bool, wait time.Duration, err error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		return "", false, 0, exitcode.Usagef("vmrun stop takes one VM name (see `vmrun ls`)")
	}
	name, force, wait = args[0], c.Bool("force"), c.Duration("wait")
	for rest := args[1:]; len(rest) > 0; rest = rest[1:] {
		flag, value, hasValue := strings.Cut(strings.TrimLeft(rest[0], "-"), "=")
		switch {
		case !strings.HasPrefix(rest[0], "-"):
			return "", false, 0, exitcode.Usagef("vmrun stop takes one VM name, not %q too (see `vmrun ls`)", rest[0])
		case flag == "force" && !hasValue:
			force = true
		case flag == "wait":
			if !hasValue {
				if len(rest) < 2 {
					return "", false, 0, exitcode.Usagef("--wait needs a duration, e.g. --wait 30s")
				}
				rest, value = rest[1:], rest[1]
			}
			if wait, err = time.ParseDuration(value); err != nil {
				return "", false, 0, exitcode.Usagef("--wait %q is not a duration; write e.g. 30s or 2m", value)
			}
		default:
			return "", false, 0, exitcode.Usagef("unknown flag %s: run `vmrun stop --help` for the flags", rest[0])
		}
	}
	return name, force, wait, nil
}
