package main

import (
	"context"
	"time"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/netmemory"
	"github.com/vmrun/vmrun/netsetup"
)

// remembered returns the plan of a --net auto run on a network where a
// layer-2 choice was seen to fail (the LAN did not answer the guest): the
// mode the guest ended up in then, decided for the same request, with a
// Reason that says so. Otherwise, or when that mode cannot be decided
// here, plan unchanged.
func remembered(facts netsetup.Facts, plan netsetup.Plan, spec config.Spec) netsetup.Plan {
	if spec.NetMode != netsetup.Auto || plan.Mode != netsetup.Macvtap && plan.Mode != netsetup.Bridge {
		return plan
	}
	o, ok, err := netmemory.Lookup(netsetup.NetworkKey(facts))
	if err != nil || !ok {
		return plan
	}
	req := planRequest(spec)
	req.Mode = netsetup.Mode(o.Mode)
	p, err := netsetup.Decide(facts, req)
	if err != nil {
		return plan
	}
	p.Reason = "remembered: " + o.String() + "; `vmrun net forget` to try " + string(plan.Mode) + " again"
	return p
}

// remember records that on the network behind facts the guest had to
// leave from for to (why), so the next --net auto run there starts in to.
func (s *session) remember(ctx context.Context, facts netsetup.Facts, from, to netsetup.Mode, why string) {
	key := netsetup.ResolveNetworkKey(ctx, facts)
	if key == "" {
		s.step("network: not remembering %s for this network (its gateway's MAC is unknown)", to)
		return
	}
	o := netmemory.Outcome{Mode: string(to), From: string(from), Why: why, When: time.Now().UTC()}
	if err := netmemory.Remember(key, o); err != nil {
		s.notify("network: could not remember %s for this network: %v", to, err)
		return
	}
	s.step("network: remembered %s for %s (%s)", to, key, netmemory.Path())
}
