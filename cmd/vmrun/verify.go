package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vmrun/vmrun/internal/dhcpprobe"
	"github.com/vmrun/vmrun/internal/dhcpverdict"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/netsetup"
)

// armVerdict starts the DHCP verdict for the run's first attachment.
func (s *session) armVerdict() {
	s.verdict.Arm(dhcpverdict.Verifies(s.spec.NetMode, s.plan), s.leaveL2)
}

// probeL2 starts, as the guest begins to boot, --net auto's DHCP probe of
// a first attachment on macvtap (internal/dhcpprobe; docs/live-uplink.md).
func (s *session) probeL2() {
	if s.plan.Mode == netsetup.Macvtap {
		stop := dhcpprobe.Start(s.c.Context, s.plan.LinkName, s.plan.MAC, s.verdict.Probe, s.leaveOnProbe, s.step)
		s.undo.Push("DHCP probe", func() error { stop(); return nil })
	}
}

// leaveOnProbe moves the guest whose LAN did not answer vmrun's probe to
// routed. When the host gets no lease either, the probe proved nothing
// (a LAN without DHCP, a server down): the guest stays, and its own
// DHCP's verdict decides.
func (s *session) leaveOnProbe(why string) bool { return s.leave(why, netsetup.Routed) }

// leaveL2 moves the guest whose LAN did not answer to routed, or to NAT
// when routed cannot be set up (no upstream lease for the guest either).
// The switch's line says which of the two the LAN is: one that answers
// the host but not the guest (routed's upstream lease, through the host's
// MAC, was answered), or one whose DHCP answers neither.
func (s *session) leaveL2(why string) { s.leave(why, netsetup.Routed, netsetup.NAT) }

// leave moves the guest to the first of modes that works, and says
// whether it did.
func (s *session) leave(why string, modes ...netsetup.Mode) bool {
	ctx := s.c.Context
	from := s.net.currentPlan().Mode
	var errs []error
	for _, mode := range modes {
		facts, plan, err := s.planFor(ctx, mode)
		if err == nil {
			err = s.switchAttachment(ctx, plan, dhcpverdict.LeftBecause(why, plan, errs), time.Time{})
		}
		if err == nil {
			s.remember(ctx, facts, from, mode, why)
			return true
		}
		errs = append(errs, fmt.Errorf("%s: %w", mode, err))
		why += "; " + string(mode) + " failed"
	}
	if len(modes) == 1 { // the probe's
		s.step("network: %s, but moving the guest failed (%v): it stays on %s, its own DHCP decides", why, errs, from)
	} else {
		s.notify("network: the LAN does not answer the guest's DHCP on %s (%s), and moving it failed: %v", from, why, errs)
	}
	return false
}

// planFor decides the plan of an explicit mode for the running guest:
// the same VM, MAC and uplink.
func (s *session) planFor(ctx context.Context, mode netsetup.Mode) (netsetup.Facts, netsetup.Plan, error) {
	spec := s.spec
	spec.NetMode, spec.NetParent = mode, ""
	spec.MAC, spec.MACSet = s.plan.MAC, true
	return netplan.DetectAndPlan(ctx, planRequest(spec))
}
