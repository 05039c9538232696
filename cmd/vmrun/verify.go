package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vmrun/vmrun/netsetup"
)

// --net auto's check of a layer-2 choice (bridge, macvtap): the LAN must
// answer the guest's DHCP. The guest's DISCOVERs are seen by the watcher
// of its addresses (Trace.Discover), the LAN's ACK to it as an address
// (Trace.Addr, source dhcp). The verdict "no answer" needs both: at least
// verdictDiscovers DISCOVERs and verdictWait since the first one without
// an ACK — several of the guest's retries (udhcpc sends one every 3 s,
// dhclient and systemd-networkd back off from 1-4 s), so one lost frame
// does not move the guest. A guest with a static address or without a
// DHCP client sends no DISCOVER and gets no verdict.
const (
	verdictWait      = 10 * time.Second
	verdictDiscovers = 3
)

// verifier holds the DHCP verdict of one attachment; fail runs (in its
// own goroutine, once) when the LAN did not answer.
type verifier struct {
	mu        sync.Mutex
	armed     bool
	discovers int
	first     time.Time
	timer     *time.Timer
	wait      time.Duration // verdictWait
	need      int           // verdictDiscovers
	fail      func(why string)
}

// discover counts one of the guest's DISCOVERs.
func (v *verifier) discover() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.armed {
		return
	}
	v.discovers++
	if v.discovers == 1 {
		v.first = time.Now()
		v.timer = time.AfterFunc(v.wait, v.expire)
		return
	}
	if v.discovers >= v.need && time.Since(v.first) >= v.wait {
		v.failLocked()
	}
}

// answered: the LAN gave the guest an address; no verdict is needed.
func (v *verifier) answered() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.disarmLocked()
}

func (v *verifier) expire() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.armed && v.discovers >= v.need {
		v.failLocked()
	}
}

func (v *verifier) failLocked() {
	why := fmt.Sprintf("no DHCP answer for the guest in %d s, %d DISCOVERs", int(time.Since(v.first).Round(time.Second).Seconds()), v.discovers)
	v.disarmLocked()
	go v.fail(why)
}

func (v *verifier) disarmLocked() {
	v.armed = false
	if v.timer != nil {
		v.timer.Stop()
	}
}

// verifies says whether --net auto checks the LAN's DHCP answer for plan:
// its layer-2 modes whose attachment watches the guest's frames.
func verifies(req netsetup.Mode, plan netsetup.Plan) bool {
	return req == netsetup.Auto && (plan.Mode == netsetup.Macvtap || plan.Mode == netsetup.Bridge) && len(plan.MAC) == 6
}

// armVerdict starts the DHCP verdict for the run's first attachment.
func (s *session) armVerdict() {
	s.verdict.mu.Lock()
	defer s.verdict.mu.Unlock()
	s.verdict.fail, s.verdict.wait, s.verdict.need = s.leaveL2, verdictWait, verdictDiscovers
	s.verdict.armed = verifies(s.spec.NetMode, s.plan)
}

// leaveL2 moves the guest whose LAN did not answer to routed, or to NAT
// when routed cannot be set up (no upstream lease for the guest either).
func (s *session) leaveL2(why string) {
	ctx := s.c.Context
	var errs []error
	for _, mode := range []netsetup.Mode{netsetup.Routed, netsetup.NAT} {
		facts, plan, err := s.planFor(ctx, mode)
		if err == nil {
			err = s.switchAttachment(ctx, plan, why)
		}
		if err == nil {
			s.remember(ctx, facts, s.plan.Mode, mode, why)
			return
		}
		errs = append(errs, fmt.Errorf("%s: %w", mode, err))
		why += "; " + string(mode) + " failed"
	}
	s.notify("network: the LAN does not answer the guest's DHCP on %s (%s), and moving it failed: %v", s.plan.Mode, why, errs)
}

// planFor decides the plan of an explicit mode for the running guest:
// the same VM, MAC and uplink.
func (s *session) planFor(ctx context.Context, mode netsetup.Mode) (netsetup.Facts, netsetup.Plan, error) {
	spec := s.spec
	spec.NetMode, spec.NetParent = mode, ""
	spec.MAC, spec.MACSet = s.plan.MAC, true
	return detectAndPlan(ctx, planRequest(spec))
}
