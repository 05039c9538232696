package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vmrun/vmrun/internal/dhcpverdict"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/netsetup"
)

// armVerdict starts the DHCP verdict for the run's first attachment.
func (s *session) armVerdict() {
	s.verdict.Arm(dhcpverdict.Verifies(s.spec.NetMode, s.plan), s.leaveL2)
}

// leaveL2 moves the guest whose LAN did not answer to routed, or to NAT
// when routed cannot be set up (no upstream lease for the guest either).
// The switch's line says which of the two the LAN is: one that answers
// the host but not the guest (routed's upstream lease, through the host's
// MAC, was answered), or one whose DHCP answers neither.
func (s *session) leaveL2(why string) {
	ctx := s.c.Context
	from := s.net.currentPlan().Mode
	var errs []error
	for _, mode := range []netsetup.Mode{netsetup.Routed, netsetup.NAT} {
		facts, plan, err := s.planFor(ctx, mode)
		if err == nil {
			err = s.switchAttachment(ctx, plan, dhcpverdict.LeftBecause(why, plan, errs), time.Time{})
		}
		if err == nil {
			s.remember(ctx, facts, from, mode, why)
			return
		}
		errs = append(errs, fmt.Errorf("%s: %w", mode, err))
		why += "; " + string(mode) + " failed"
	}
	s.notify("network: the LAN does not answer the guest's DHCP on %s (%s), and moving it failed: %v", from, why, errs)
}

// planFor decides the plan of an explicit mode for the running guest:
// the same VM, MAC and uplink.
func (s *session) planFor(ctx context.Context, mode netsetup.Mode) (netsetup.Facts, netsetup.Plan, error) {
	spec := s.spec
	spec.NetMode, spec.NetParent = mode, ""
	spec.MAC, spec.MACSet = s.plan.MAC, true
	return netplan.DetectAndPlan(ctx, planRequest(spec))
}
