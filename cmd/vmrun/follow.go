package main

import (
	"context"

	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/watch"
)

// followUplinkUsage is --follow-uplink's help.
const followUplinkUsage = "`on` (default): while the VM runs, watch the host's network (routes, links, addresses, Wi-Fi association) " +
	"and say on stderr, in one line, each time it changes in a way that concerns the guest — the default route moving to another " +
	"interface or a VPN, no uplink left, a new LAN, a new MAC under ipvtap — and what the guest's attachment would need " +
	"(`vmrun net plan --watch` prints the same without a VM); the guest itself stays on the attachment it started on. " +
	"off: do not watch. Nothing to watch with --net user, nat or none"

// followsUplink says whether a run with --net mode has an uplink to follow:
// auto (which may move the guest), and the modes whose guest sits on the
// uplink's LAN (which re-register on it). NAT and user-mode guests sit
// behind this host's own address.
func followsUplink(mode netsetup.Mode) bool {
	switch mode {
	case netsetup.Auto, "", netsetup.Bridge, netsetup.Macvtap, netsetup.IPVtap, netsetup.Routed:
		return true
	}
	return false
}

// followUplink starts watching the host's uplink for the running guest
// (--follow-uplink) and returns what stops the watch.
func (s *session) followUplink() (stop func()) {
	if !s.spec.FollowUplink || !followsUplink(s.spec.NetMode) || s.plan.Mode == netsetup.None {
		return func() {}
	}
	ctx, cancel := context.WithCancel(s.c.Context)
	w, err := watch.Start(ctx, watch.Config{Request: planRequest(s.spec), Plan: s.plan})
	if err != nil {
		cancel()
		s.notify("cannot follow the uplink (%v); the guest stays on %s whatever the host's network does", err, s.plan.Mode)
		return func() {}
	}
	s.step("following the uplink (%s)", w.First.Uplink.Facts.Uplink)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range w.Decisions() {
			s.notify("uplink: %s %s → %s: %s; not applied, the guest stays on %s (moving a running guest is not built yet)", d.Action, d.From, d.To, d.Why, watch.Where{Mode: s.plan.Mode, Parent: s.plan.Parent})
		}
		if err := w.Err(); err != nil {
			s.notify("stopped following the uplink: %v", err)
		}
	}()
	return func() { cancel(); <-done }
}
