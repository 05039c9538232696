package main

import (
	"context"
	"time"

	"github.com/vmrun/vmrun/internal/dhcpverdict"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/watch"
)

// reregisterWait bounds the wait for an in-place re-registration (a
// routed guest's new upstream lease: a DHCP exchange, retried).
const reregisterWait = 20 * time.Second

// followUplinkUsage is --follow-uplink's help.
const followUplinkUsage = "`on` (default): while the VM runs, watch the host's network (routes, links, addresses, Wi-Fi association) " +
	"and follow it: with --net auto, move the running guest (same QEMU, its NIC replaced) to the attachment the new uplink calls for — " +
	"another interface, NAT (user mode without root) behind a VPN or while there is no uplink at all, back again when one returns — and re-attach it on a new LAN " +
	"or MAC, one stderr line each; an explicit mode stays on its interface and says what changed; routed (explicit or auto's) on a new LAN leases the guest's address there again, in place; ipvtap re-registers the guest under its parent's new MAC, with a new NIC. " +
	"`vmrun net plan --watch` shows the decisions without a VM. off: decide once at start. Nothing to follow with --net user, nat or none"

// followUplink starts watching the host's uplink for the running guest
// (--follow-uplink) and returns what stops the watch. Each decision is
// carried out by follow before the watcher looks again.
func (s *session) followUplink() (stop func()) {
	if !s.spec.FollowUplink || !netplan.FollowsUplink(s.spec.NetMode) || s.plan.Mode == netsetup.None {
		return func() {}
	}
	ctx, cancel := context.WithCancel(s.c.Context)
	movable := s.vm.NIC != nil && s.vm.NIC.Hotplug
	req := planRequest(s.spec)
	w, err := watch.Start(ctx, watch.Config{Request: req, Plan: s.plan,
		Apply:   func(d watch.Decision) netsetup.Plan { return s.follow(ctx, d, movable) },
		Current: s.net.currentPlan,
		Remembered: func(f netsetup.Facts, p netsetup.Plan) netsetup.Plan {
			return netplan.Remembered(netsetup.NetworkKey(f), f, p, req)
		}})
	if err != nil {
		cancel()
		s.notify("cannot follow the uplink (%v); the guest stays on %s whatever the host's network does", err, s.plan.Mode)
		return func() {}
	}
	s.step("following the uplink (%s)", w.First.Uplink.Facts.Uplink)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range w.Decisions() { // carried out by follow
		}
		if err := w.Err(); err != nil {
			s.notify("stopped following the uplink: %v", err)
		}
	}()
	return func() { cancel(); <-done }
}

// follow carries out decision d and returns the plan the guest is on
// afterwards. A renewal (the attachment is still valid: the carrier is
// back, a new LAN behind the same macvtap) toggles the guest's carrier on
// the NIC it has (renewLink); so does a re-attachment the guest's
// attachment can make in place (a routed guest on a new LAN or with its
// carrier back: its upstream lease taken anew), --net auto's too (no
// NIC replaced; one whose re-registration fails is moved as below). A
// decision with a plan moves the guest onto a new
// attachment for it (switchAttachment: its one stderr line), the next
// generation's, so that the new links never take the old ones' names; a
// re-attachment on the same mode is such a move too (a fresh attachment
// and NIC: the guest asks the new LAN for an address). Without a plan
// (the uplink lost its carrier, an explicit mode's interface went), or
// when the guest's NIC cannot be replaced (explicit modes but ipvtap boot
// without a hot-pluggable port), the line says what changed and that the
// guest stays.
func (s *session) follow(ctx context.Context, d watch.Decision, movable bool) netsetup.Plan {
	cur := s.net.currentPlan()
	here := watch.Where{Mode: cur.Mode, Parent: cur.Parent}
	switch {
	case d.Action == watch.Renew:
		s.renewLink(ctx, d.Why, false)
		return cur
	case d.Action == watch.Reattach && s.net.current().Reregister != nil && (d.Plan == nil || d.Plan.Mode == cur.Mode && d.Plan.Parent == cur.Parent):
		// In place, with or without a plan: no eject for the guest. A
		// movable guest whose re-registration failed is moved instead.
		if s.renewLink(ctx, d.Why, true) || d.Plan == nil || !movable {
			return cur
		}
	case d.Plan == nil:
		s.notify("network: %s: the guest stays on %s", d.Why, here)
		return cur
	case !movable:
		s.notify("network: %s; the guest stays on %s (only a --net auto or ipvtap guest on a tap can be moved live)", d.Why, here)
		return cur
	}
	p := d.Plan.WithGen(cur.Gen + 1)
	p.RuntimeRoot = cur.RuntimeRoot
	if err := s.switchAttachment(ctx, p, d.Why, d.At.Add(-d.Latency)); err != nil {
		s.notify("network: could not move the guest to %s (%v); it stays on %s", d.To, err, here)
		return cur
	}
	return p
}

// currentPlan is the plan of the attachment the guest is on.
func (n *netState) currentPlan() netsetup.Plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.plan
}

// renewLink has the running guest renew on its current attachment: its
// carrier toggled and its MAC announced (launcher.Process.RenewLink),
// no NIC replaced. With reregister, the attachment first registers the
// guest again on the new LAN, in place (Attachment.Reregister: routed's
// upstream lease taken anew, within reregisterWait), so that the guest,
// asking again, gets the new address, on the NIC it has: explicit modes
// boot without the ports a NIC replacement needs, and an auto guest is
// spared the eject. why is the decision's reason; the one stderr line
// adds how long it took. It returns false when the re-registration
// failed (the guest's attachment is as it was).
func (s *session) renewLink(ctx context.Context, why string, reregister bool) (ok bool) {
	n := &s.net
	n.mu.Lock()
	defer n.mu.Unlock()
	start := time.Now()
	if reregister {
		rctx, cancel := context.WithTimeout(ctx, reregisterWait)
		got, err := n.att.Reregister(rctx)
		cancel()
		if err != nil {
			s.notify("network: %s; %v", why, err)
			return false
		}
		why += "; " + got
		_ = s.dir.Update(func(st *rundir.State) { st.Addresses = nil })
	}
	// A new LAN behind the same attachment may refuse the guest: check
	// its DHCP again (a renewal that is answered sends no DISCOVER).
	s.verdict.Arm(dhcpverdict.Verifies(s.spec.NetMode, n.plan), s.leaveL2)
	if err := s.qemu.RenewLink(ctx); err != nil {
		s.notify("network: %s; toggling the guest's carrier failed (%v): it stays on %s and renews when its DHCP client does", why, err, n.plan.Mode)
		return true
	}
	s.notify("network: %s; carrier toggled in %d ms", why, time.Since(start).Milliseconds())
	return true
}
