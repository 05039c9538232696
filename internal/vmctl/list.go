package vmctl

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/gc"
)

// Info is one line of `vmrun ls`.
type Info struct {
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
	Addresses []AddrInfo `json:"addresses"`
}

// AddrInfo is one of the guest's addresses in `vmrun ls --json`.
type AddrInfo struct {
	Addr   string    `json:"addr"`
	Source string    `json:"source"` // dhcp, arp, ndp, traffic, static, user
	Server string    `json:"server"` // the DHCP server that granted it; "" when none
	Learnt time.Time `json:"learnt"`
}

// List returns a line for every VM runtime directory under root.
func List(root string) ([]Info, error) {
	entries, err := rundir.List(root)
	if err != nil {
		return nil, exitcode.Setupf("cannot list %s: %w", root, err)
	}
	infos := make([]Info, 0, len(entries))
	for _, e := range entries {
		infos = append(infos, info(e))
	}
	return infos, nil
}

// WriteList writes infos to w: as indented JSON, or as `vmrun ls`'s table.
func WriteList(w io.Writer, infos []Info, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	if len(infos) == 0 {
		fmt.Fprintln(w, "no VMs are running")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tNET\tMAC\tADDRESSES\tUPTIME\tSTATUS")
	for _, i := range infos {
		net := i.Net
		if i.Parent != "" {
			net += ":" + i.Parent
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", i.Name, i.PID, net, i.MAC, addrColumn(i.Addresses), i.Uptime, i.Status)
	}
	return tw.Flush()
}

func info(e rundir.Entry) Info {
	i := Info{Name: e.Name, Status: "running"}
	if !e.Live {
		cmd := "vmrun gc"
		if e.State != nil {
			cmd = gcCommand(e.State)
		}
		i.Status = "stale (run `" + cmd + "`)"
	}
	if e.State != nil {
		i.PID, i.QEMUPID, i.Net, i.Parent, i.Uplink, i.MAC, i.Switches =
			e.State.PID, e.State.QEMUPID, e.State.Mode, e.State.Parent, e.State.Uplink, e.State.MAC, e.State.Switches
		for _, a := range e.State.Addresses {
			i.Addresses = append(i.Addresses, AddrInfo{Addr: a.Addr, Source: a.Source, Server: a.Server, Learnt: a.Learnt})
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

// gcCommand is the command that cleans up after a stale VM: gc, in the
// network namespace its vmrun ran in when that is another one.
var gcCommand = gc.Command

// addrColumn is the ADDRESSES column: each address with its source in
// brackets, "-" when none is known yet.
func addrColumn(as []AddrInfo) string {
	if len(as) == 0 {
		return "-"
	}
	parts := make([]string, len(as))
	for k, a := range as {
		parts[k] = a.Addr + "(" + a.Source + ")"
	}
	return strings.Join(parts, ",")
}

// StopArgs returns `vmrun stop`'s VM name and options from its arguments
// (force and wait as parsed before the name): they may also follow the
// name as documented (`vmrun stop NAME --force`), as the flag parser stops
// at the first argument that is not a flag.
func StopArgs(args []string, force bool, wait time.Duration) (string, bool, time.Duration, error) {
	if len(args) == 0 {
		return "", false, 0, exitcode.Usagef("vmrun stop takes one VM name (see `vmrun ls`)")
	}
	name := args[0]
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
			var err error
			if wait, err = time.ParseDuration(value); err != nil {
				return "", false, 0, exitcode.Usagef("--wait %q is not a duration; write e.g. 30s or 2m", value)
			}
		default:
			return "", false, 0, exitcode.Usagef("unknown flag %s: run `vmrun stop --help` for the flags", rest[0])
		}
	}
	return name, force, wait, nil
}
