package watch

import (
	"bytes"
	"fmt"
	"net"
	"slices"

	"github.com/vmrun/vmrun/netsetup"
)

// Replan decides what the guest on attachment cur — decided for request r
// while the uplink was old — should do now that detection describes the
// uplink as now. It is pure: every row is a unit test.
//
// With --net auto, the plan is decided again: another mode or parent is a
// Switch; no usable uplink is a Park on an attachment that needs none (NAT
// when vmrun may set it up, else user mode). An explicit mode never moves: it only
// re-registers (Reattach, Renew) or parks where it is. Either way, on the
// same mode and parent, what leaves the attachment valid — the carrier
// coming back (bridge, macvtap, ipvtap on an unchanged MAC), a new LAN
// behind a bridge or macvtap, a roam to another access point — is a Renew
// (the guest's carrier toggled, nothing rebuilt); what does not — a new
// parent MAC under ipvtap, a new LAN under ipvtap or routed, routed's
// carrier back (it leases upstream again) — is a Reattach; what the guest
// does not see — an address renewal, a route
// metric, a second default route with a worse metric, another interface —
// is Nothing.
func Replan(cur netsetup.Plan, old, now State, r netsetup.Request) Decision {
	d := Decision{Action: Nothing, From: whereOf(cur), To: whereOf(cur), Uplink: now}
	if r.Mode == "" || r.Mode == netsetup.Auto {
		return replanAuto(d, cur, old, now, r)
	}
	return replanExplicit(d, cur, old, now, r)
}

// replanAuto re-decides the plan of --net auto.
func replanAuto(d Decision, cur netsetup.Plan, old, now State, r netsetup.Request) Decision {
	next, err := netsetup.Decide(now.Facts, r)
	if err != nil {
		if !usable(old) {
			return d
		}
		return decided(d, Park, nil, fmt.Sprintf("no attachment can be planned now (%v); the guest stays on %s, without an uplink, until one returns", err, d.From))
	}
	if !usable(now) {
		if parked(cur) {
			return d
		}
		park := parkPlan(next, now, r)
		return decided(d, Park, &park, fmt.Sprintf("%s; the guest moves to %s, which needs no uplink, until one returns", lost(old, now), whereOf(park)))
	}
	if leftL2(cur, next, old, now) {
		// The run moved the guest off layer 2 on this LAN (its DHCP got no
		// answer there): it stays off while the LAN stays; a re-attachment
		// is a fresh one of the mode it is in.
		same := cur
		return sameAttachment(d, cur, &same, old, now)
	}
	if next.Mode != cur.Mode || next.Parent != cur.Parent {
		why := moved(old, now, cur)
		if lan := lanChange(old, now); lan != "" && cur.Uplink == now.Facts.Uplink {
			why = lan
		}
		return decided(d, Switch, &next, fmt.Sprintf("%s: %s", why, next.Reason))
	}
	return sameAttachment(d, cur, &next, old, now)
}

// leftL2: cur is routed or NAT where Decide gives bridge or macvtap on the
// same uplink, whose LAN did not change: the guest was moved off layer 2
// there (--net auto's DHCP verdict), and going back would meet the same
// refusal.
func leftL2(cur, next netsetup.Plan, old, now State) bool {
	if cur.Mode != netsetup.Routed && cur.Mode != netsetup.NAT || next.Mode != netsetup.Macvtap && next.Mode != netsetup.Bridge {
		return false
	}
	return !parked(cur) && cur.Uplink == now.Facts.Uplink && old.Facts.Uplink == now.Facts.Uplink &&
		old.Facts.Kind == now.Facts.Kind && usable(old) && lanChange(old, now) == ""
}

// parkPlan is where an auto guest waits for an uplink: NAT when vmrun may
// set it up (a tap on its private bridge: it needs no uplink, a running
// guest can be moved onto it, and it reaches out through whichever uplink
// comes next), else fallback, what Decide gives without an uplink (user
// mode).
func parkPlan(fallback netsetup.Plan, now State, r netsetup.Request) netsetup.Plan {
	nat := r
	nat.Mode, nat.Parent = netsetup.NAT, ""
	if p, err := netsetup.Decide(now.Facts, nat); err == nil {
		return p
	}
	return fallback
}

// replanExplicit handles an explicit --net MODE: the guest stays on its
// parent, whatever the default route does. An ipvtap guest, which sends
// from its parent's MAC, is re-registered under the parent's new MAC: the
// decision carries the plan for it (its NIC is replaced by one with that
// MAC, on its parent).
func replanExplicit(d Decision, cur netsetup.Plan, old, now State, r netsetup.Request) Decision {
	if !lanBound(cur.Mode) {
		return d
	}
	var next *netsetup.Plan
	if cur.Mode == netsetup.IPVtap && usable(now) && parentMACChanged(cur, old, now) {
		if p, err := netsetup.Decide(now.Facts, r); err == nil && p.Mode == cur.Mode && p.Parent == cur.Parent {
			next = &p
		}
	}
	switch {
	case usable(old) && !usable(now):
		return decided(d, Park, nil, fmt.Sprintf("%s; --net %s stays on %s (an explicit mode does not move), so the guest is cut off until it returns", lost(old, now), cur.Mode, cur.Parent))
	case !usable(old) && usable(now) && next != nil && !carrier(now):
		// Back under a new MAC, without its carrier yet (a station
		// associates after it is up): the carrier's return re-attaches
		// the guest (sameAttachment), once the LAN can answer the new
		// attachment's DHCP; made now, its lease would wait for the
		// keeper's next try and the guest's DHCP client would give up.
		return d
	case !usable(old) && usable(now) && cur.Mode != netsetup.Routed && !parentMACChanged(cur, old, now):
		return decided(d, Renew, nil, fmt.Sprintf("%s is back: %s", now.Facts.Uplink, toggles(cur.Mode)))
	case !usable(old) && usable(now) && next != nil:
		return decided(d, Reattach, next, fmt.Sprintf("%s is back: %s", now.Facts.Uplink, macMoved(cur, old, now)))
	case !usable(old) && usable(now):
		return decided(d, Reattach, nil, fmt.Sprintf("%s is back: %s", now.Facts.Uplink, renews(cur.Mode)))
	case !usable(now):
		return d
	}
	return sameAttachment(d, cur, next, old, now)
}

// parentMACChanged: the parent's MAC is not the one the attachment was
// made for. Under ipvtap that is the guest's own MAC (cur.MAC), compared
// with the attachment's rather than the last detection's, so that a MAC
// changed while the parent was down or had no carrier (where
// NetworkManager changes it) is not lost; for the other modes (and a plan
// without a MAC) the last detection's.
func parentMACChanged(cur netsetup.Plan, old, now State) bool {
	return !bytes.Equal(attachedMAC(cur, old), now.Facts.MAC)
}

// attachedMAC is the parent MAC the attachment was made for (see
// parentMACChanged).
func attachedMAC(cur netsetup.Plan, old State) net.HardwareAddr {
	if cur.Mode == netsetup.IPVtap && len(cur.MAC) > 0 {
		return cur.MAC
	}
	return old.Facts.MAC
}

// macMoved says that ipvtap's parent has a new MAC and what that does.
func macMoved(cur netsetup.Plan, old, now State) string {
	return fmt.Sprintf("%s's MAC changed from %s to %s: ipvtap re-registers the guest's addresses under it (the guest sends from its parent's MAC)", now.Facts.Uplink, macString(attachedMAC(cur, old)), macString(now.Facts.MAC))
}

// sameAttachment decides for a guest on cur whose mode and parent stay:
// next is the re-decided plan when there is one (auto; explicit ipvtap
// under a new MAC).
func sameAttachment(d Decision, cur netsetup.Plan, next *netsetup.Plan, old, now State) Decision {
	mode, dev := d.From.Mode, now.Facts.Uplink
	if !lanBound(mode) {
		return d
	}
	switch {
	case carrier(old) && !carrier(now):
		return decided(d, Park, nil, fmt.Sprintf("%s lost its carrier (%s); the guest stays on %s, cut off, until it returns", dev, now.Facts.OperState, d.From))
	case !carrier(now):
		return d
	case mode == netsetup.IPVtap && parentMACChanged(cur, old, now):
		return decided(d, Reattach, next, macMoved(cur, old, now))
	case !carrier(old) && mode == netsetup.Routed:
		return decided(d, Reattach, next, fmt.Sprintf("%s has its carrier back: %s", dev, renews(mode)))
	case !carrier(old):
		return decided(d, Renew, nil, fmt.Sprintf("%s has its carrier back, the attachment is still valid: %s", dev, toggles(mode)))
	}
	if lan := lanChange(old, now); lan != "" {
		if mode == netsetup.Bridge || mode == netsetup.Macvtap {
			return decided(d, Renew, nil, fmt.Sprintf("%s: %s", lan, toggles(mode)))
		}
		return decided(d, Reattach, next, fmt.Sprintf("%s: %s", lan, renews(mode)))
	}
	if old.BSSID != "" && now.BSSID != "" && old.BSSID != now.BSSID {
		return decided(d, Renew, nil, fmt.Sprintf("%s roamed from access point %s to %s (same SSID %q): the guest's carrier is toggled and its MAC announced again", dev, old.BSSID, now.BSSID, now.SSID))
	}
	return d
}

// toggles says what a Renew does for the mode: the attachment stays, the
// guest's carrier is toggled.
func toggles(m netsetup.Mode) string {
	if m == netsetup.IPVtap {
		return "the guest's carrier is toggled so that it renews (ipvtap registers its addresses again itself); no switch"
	}
	return "the guest's carrier is toggled so that its DHCP client asks the LAN again; no switch"
}

// decided fills in the action, the target and why.
func decided(d Decision, a Action, next *netsetup.Plan, why string) Decision {
	d.Action, d.Why = a, why
	if next != nil {
		p := *next
		d.Plan, d.To = &p, whereOf(p)
	}
	return d
}

// lanBound: the guest of this mode sits on the uplink's LAN (or is routed
// onto it), so a new LAN or a lost uplink concerns it. NAT and user guests
// sit behind this host's own address; the host's new route is enough.
func lanBound(m netsetup.Mode) bool {
	switch m {
	case netsetup.Bridge, netsetup.Macvtap, netsetup.IPVtap, netsetup.Routed:
		return true
	}
	return false
}

// renews says what a re-registration does for the mode.
func renews(m netsetup.Mode) string {
	switch m {
	case netsetup.Routed:
		return "routed mode leases the guest's address upstream again, and the guest's carrier is toggled so that it renews"
	case netsetup.IPVtap:
		return "ipvtap registers the guest's addresses again, and the guest's carrier is toggled so that it renews"
	default:
		return "the guest's carrier is toggled so that its DHCP client asks the LAN again"
	}
}

// usable: there is an uplink that exists and is up.
func usable(s State) bool {
	return s.Facts.Kind != netsetup.UplinkNone && s.Facts.Exists && s.Facts.Up
}

// carrier: the uplink passes traffic (operational state up, or a driver
// that reports none).
func carrier(s State) bool {
	switch s.Facts.OperState {
	case "up", "unknown", "":
		return usable(s)
	}
	return false
}

// parked: cur was decided without an uplink (auto's user-mode fallback).
func parked(cur netsetup.Plan) bool {
	return cur.Uplink == "" || cur.UplinkKind == netsetup.UplinkNone
}

// lost says how the uplink went away.
func lost(old, now State) string {
	o, n := old.Facts, now.Facts
	switch {
	case n.Named && !n.Exists:
		return fmt.Sprintf("%s is gone", n.Uplink)
	case n.Kind != netsetup.UplinkNone && !n.Up:
		return fmt.Sprintf("%s is down", n.Uplink)
	case o.Uplink != "":
		return fmt.Sprintf("there is no default route any more (it left through %s)", o.Uplink)
	default:
		return "there is no default route"
	}
}

// moved says what changed between old and now that moves the guest off
// cur (decided for cur.Uplink: old's uplink, unless a switch to now's
// could not be carried out).
func moved(old, now State, cur netsetup.Plan) string {
	o, n := old.Facts, now.Facts
	switch {
	case parked(cur) || !usable(old) && cur.Uplink == o.Uplink:
		return fmt.Sprintf("an uplink is back (%s, %s)", n.Uplink, n.Kind)
	case cur.Uplink != n.Uplink:
		return fmt.Sprintf("the default route moved from %s to %s (%s)", cur.Uplink, n.Uplink, n.Kind)
	case o.Kind != n.Kind:
		return fmt.Sprintf("%s changed from %s to %s", n.Uplink, o.Kind, n.Kind)
	default:
		return fmt.Sprintf("%s changed", n.Uplink)
	}
}

// lanChange says how the LAN behind the same uplink changed (another
// gateway, SSID or subnet), or "".
func lanChange(old, now State) string {
	og, ng := gateway(old), gateway(now)
	switch {
	case og != ng && og != "" && ng != "":
		return fmt.Sprintf("the gateway changed from %s to %s (a new LAN)", og, ng)
	case old.SSID != now.SSID && old.SSID != "" && now.SSID != "":
		return fmt.Sprintf("%s joined SSID %q (was %q)", now.Facts.Uplink, now.SSID, old.SSID)
	}
	if os, ns := subnets(old), subnets(now); len(os) > 0 && len(ns) > 0 && !slices.Equal(os, ns) {
		return fmt.Sprintf("%s's subnets changed from %v to %v (a new LAN)", now.Facts.Uplink, os, ns)
	}
	return ""
}

func gateway(s State) string {
	if s.Facts.Route == nil {
		return ""
	}
	return s.Facts.Route.Gateway
}

// subnets are the networks of the uplink's global addresses, sorted: an
// address renewed or replaced within its subnet leaves them as they are.
func subnets(s State) []string {
	var out []string
	for _, a := range s.Facts.Addrs {
		if _, n, err := net.ParseCIDR(a); err == nil {
			out = append(out, n.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// remembered applies what --net auto remembered for the network (hook)
// to a switch onto bridge or macvtap: the switch goes to the remembered
// mode instead, and says so; a switch whose remembered target is where
// the guest is already is no switch.
func remembered(dec Decision, cur netsetup.Plan, hook func(netsetup.Facts, netsetup.Plan) netsetup.Plan) Decision {
	if hook == nil || dec.Action != Switch || dec.Plan == nil || dec.Plan.Mode != netsetup.Macvtap && dec.Plan.Mode != netsetup.Bridge {
		return dec
	}
	p := hook(dec.Uplink.Facts, *dec.Plan)
	switch {
	case p.Mode == dec.Plan.Mode:
		return dec
	case p.Mode == cur.Mode && p.Parent == cur.Parent:
		return Decision{At: dec.At, Action: Nothing, From: dec.From, To: dec.From, Uplink: dec.Uplink}
	}
	dec.Why += "; " + p.Reason
	dec.Plan, dec.To = &p, whereOf(p)
	return dec
}
