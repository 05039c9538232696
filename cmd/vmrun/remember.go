package main

import (
	"context"
	"time"

	"github.com/vmrun/vmrun/internal/netmemory"
	"github.com/vmrun/vmrun/netsetup"
)

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
