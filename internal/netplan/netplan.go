// Package netplan turns a run's options into its network plan: the
// request of a resolved spec, the host's facts detected and the plan
// decided (with the exit code of a refusal), what --net auto remembered
// about the network applied, and the launcher's NIC of an attachment. It
// also forgets what was remembered (`vmrun net forget`), says which modes
// have an uplink to follow, and prints the re-plans of `vmrun net plan
// --watch`.
package netplan

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/netmemory"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/watch"
)

// Request is the network request of spec, within limits (the
// administrator's allow-list for an unprivileged vmrun; nil for root).
func Request(spec config.Spec, limits *netsetup.Limits) netsetup.Request {
	return netsetup.Request{
		Mode: spec.NetMode, Parent: spec.NetParent, Uplink: spec.Uplink, Name: spec.Name,
		MAC: spec.MAC, MACSet: spec.MACSet, Queues: spec.CPUs, Forwards: spec.Forwards, NAT: spec.NAT,
		GuestIP: spec.GuestIP, Gateway: spec.Gateway, NoHostLink: spec.NoHostLink, Limits: limits,
		ProbeCache: filepath.Join(rundir.Root(), netsetup.ProbeCacheFile),
	}
}

// Plan detects the host's facts and decides the attachment of req, once,
// with what --net auto remembered about the network (Remembered); a
// --net auto plan carries the network's key (Plan.Network).
func Plan(ctx context.Context, req netsetup.Request) (netsetup.Plan, error) {
	facts, plan, err := DetectAndPlan(ctx, req)
	if err != nil || req.Mode != netsetup.Auto {
		return plan, err
	}
	key := netsetup.NetworkKey(facts)
	plan = Remembered(key, facts, plan, req)
	plan.Network = key
	return plan, nil
}

// DetectAndPlan detects the host for req and decides its plan.
func DetectAndPlan(ctx context.Context, req netsetup.Request) (netsetup.Facts, netsetup.Plan, error) {
	facts, err := netsetup.Detect(ctx, req)
	if err != nil {
		return netsetup.Facts{}, netsetup.Plan{}, exitcode.Wrap(Code(err), err)
	}
	plan, err := netsetup.Decide(facts, req)
	if err != nil {
		return netsetup.Facts{}, netsetup.Plan{}, exitcode.Wrap(Code(err), err)
	}
	return facts, plan, nil
}

// Code is the exit code of a planning error: a refusal of the request
// itself (--net user --guest-ip ..., a named interface that does not
// exist) is a usage error; what the host lacks is a set-up failure.
func Code(err error) int {
	if netsetup.IsRequestError(err) {
		return exitcode.Usage
	}
	return exitcode.Setup
}

// Remembered returns the plan of a --net auto run on the network named key
// (netsetup.NetworkKey) where a layer-2 choice was seen to fail (the LAN
// did not answer the guest): the mode the guest ended up in then, decided
// for the same request, with a Reason that says so. Otherwise, or when that mode cannot be decided
// here, plan unchanged.
func Remembered(key string, facts netsetup.Facts, plan netsetup.Plan, req netsetup.Request) netsetup.Plan {
	if req.Mode != netsetup.Auto || plan.Mode != netsetup.Macvtap && plan.Mode != netsetup.Bridge {
		return plan
	}
	o, ok, err := netmemory.Lookup(key)
	if err != nil || !ok {
		return plan
	}
	req.Mode = netsetup.Mode(o.Mode)
	p, err := netsetup.Decide(facts, req)
	if err != nil {
		return plan
	}
	p.Reason = "remembered: " + o.String() + "; `vmrun net forget` to try " + string(plan.Mode) + " again"
	return p
}

// Forget is `vmrun net forget`'s body: it forgets what --net auto
// remembered about the network the host is on (every network with all)
// and writes one line per network forgotten to w.
func Forget(ctx context.Context, w io.Writer, all bool) error {
	var keys []string
	if !all {
		facts, err := netsetup.Detect(ctx, netsetup.Request{Mode: netsetup.Auto})
		if err != nil {
			return exitcode.Wrap(exitcode.Setup, err)
		}
		key := netsetup.NetworkKey(facts)
		if key == "" {
			fmt.Fprintln(w, "nothing to forget: the network's gateway MAC is unknown here")
			return nil
		}
		keys = []string{key}
	}
	gone, err := netmemory.Forget(keys...)
	if err != nil {
		return exitcode.Wrap(exitcode.Setup, err)
	}
	if len(gone) == 0 {
		fmt.Fprintln(w, "nothing remembered")
	}
	for _, k := range gone {
		fmt.Fprintf(w, "forgot %s\n", k)
	}
	return nil
}

// NIC converts a netsetup attachment into the launcher's NIC.
func NIC(a *netsetup.Attachment) *launcher.NIC {
	if a == nil || a.Backend == "" {
		return nil
	}
	n := &launcher.NIC{Backend: a.Backend, Files: a.Files, VhostFiles: a.VhostFiles, MAC: a.MAC, Options: a.Options}
	if a.Backend == "tap" {
		n.MTU = a.MTU
	}
	return n
}

// Hotplug says whether the run's NIC goes on a hot-pluggable port, so
// that the running guest can be moved to another attachment: --net auto,
// and an explicit --net ipvtap (whose guest sends from its parent's MAC:
// when the parent's MAC changes, the guest gets a NIC with the new one),
// on a tap backend.
func Hotplug(req netsetup.Mode, nic *launcher.NIC) bool {
	return (req == netsetup.Auto || req == netsetup.IPVtap) && nic != nil && nic.Backend == "tap"
}

// SetupWaits says whether making plan's attachment can wait on the
// network: routed's upstream lease (up to dhcpupstream's 30 s without an
// answer). A switch to such a plan makes it before the guest is asked to
// eject its NIC, not during the eject: the guest would be without a NIC
// for as long.
func SetupWaits(plan netsetup.Plan) bool {
	return plan.Mode == netsetup.Routed && plan.GuestIP == nil
}

// LateNIC says whether a run of plan plugs its NIC in over QMP after
// QEMU has started (launcher.VM.LateNIC), so that QEMU's own start and
// the network set-up overlap: when the NIC would go on a hot-pluggable
// port anyway (Hotplug), whose place in the command line holds the same
// root ports either way.
func LateNIC(req netsetup.Mode, plan netsetup.Plan) bool {
	return Hotplug(req, NIC(netsetup.Preview(plan)))
}

// FollowsUplink says whether a run with --net mode has an uplink to follow:
// auto (which may move the guest), and the modes whose guest sits on the
// uplink's LAN (which say what changed). NAT and user-mode guests sit
// behind this host's own address.
func FollowsUplink(mode netsetup.Mode) bool {
	switch mode {
	case netsetup.Auto, "", netsetup.Bridge, netsetup.Macvtap, netsetup.IPVtap, netsetup.Routed:
		return true
	}
	return false
}

// Watch is `vmrun net plan --watch`'s body: the plan of req, then each
// re-plan the watcher decides, one line each (JSON with asJSON) on w,
// until ctx ends.
func Watch(ctx context.Context, w io.Writer, req netsetup.Request, asJSON bool) error {
	facts, plan, err := DetectAndPlan(ctx, req)
	if err != nil {
		return err
	}
	wt, err := watch.Start(ctx, watch.Config{Request: req, Facts: facts, Plan: plan})
	if err != nil {
		return exitcode.Setupf("watch the host's network: %w", err)
	}
	if err := wt.First.Write(w, asJSON); err != nil {
		return err
	}
	for d := range wt.Decisions() {
		if err := d.Write(w, asJSON); err != nil {
			return err
		}
	}
	if err := wt.Err(); err != nil {
		return exitcode.Setupf("watching the host's network stopped: %w", err)
	}
	return nil
}
