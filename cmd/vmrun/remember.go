package main

import (
	"context"

	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/netsetup"
)

// remember records that on the network behind facts the guest had to
// leave from for to (why), so the next --net auto run there starts in to.
func (s *session) remember(ctx context.Context, facts netsetup.Facts, from, to netsetup.Mode, why string) {
	if line, err := netplan.Remember(ctx, facts, from, to, why); err != nil {
		s.notify("%v", err)
	} else {
		s.step("%s", line)
	}
}
