// Package watch follows the host's uplink while a guest runs: it listens
// to the kernel's route, link and address notifications and to nl80211's
// association events, coalesces each burst, describes the uplink again
// (package detect) and decides, purely (Replan), what the running guest's
// attachment should do about it: nothing, re-register on the same mode, a
// switch to another attachment, or park without an uplink. It changes
// nothing on the host: `vmrun net plan --watch` prints its decisions, and a
// run with --follow-uplink hands them to the session.
package watch

import (
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// State is the uplink as one detection saw it: the Facts Decide reads, and
// the Wi-Fi association (empty when not associated or not Wi-Fi).
type State struct {
	Facts netsetup.Facts `json:"facts"`
	// SSID and BSSID of the association of a Wi-Fi station.
	SSID  string `json:"ssid,omitempty"`
	BSSID string `json:"bssid,omitempty"`
}

// Action is what a decision asks of the running guest's attachment.
type Action string

// The actions Replan decides.
const (
	// Nothing changed that matters to the guest (address renewal, an
	// unrelated interface, a route metric, a worse second default route).
	Nothing Action = "none"
	// Reattach keeps the mode and the parent but re-registers what depends
	// on the uplink: ipvtap's addresses under the parent's new MAC, a routed
	// guest's lease on a new LAN, the guest's carrier toggled so that its
	// DHCP client renews on a new LAN or after a roam.
	Reattach Action = "reattach"
	// Renew keeps the attachment as it is, valid on the same parent, MAC
	// and mode: only the guest's carrier is toggled (QMP set_link down,
	// up) so that its DHCP client renews, and its MAC announced again.
	// Nothing is rebuilt and the guest keeps its NIC; what the attachment
	// re-registers itself (ipvtap's watcher, when its parent is back) it
	// does on its own. Decision.Plan is nil.
	Renew Action = "renew"
	// Switch moves the guest to Decision.Plan: another uplink, another mode.
	Switch Action = "switch"
	// Park: there is no usable uplink. With Decision.Plan set (auto), the
	// guest moves to that attachment, which needs none (NAT, else user
	// mode); without
	// (an explicit mode, or a link that only lost its carrier), the guest
	// stays where it is, cut off. A later decision reconnects it.
	Park Action = "park"
	// Begin is the first line of `vmrun net plan --watch`: the plan the
	// watch starts from. Replan never returns it.
	Begin Action = "start"
)

// Decision is one re-plan.
type Decision struct {
	// At is when it was decided.
	At time.Time
	// Action is what to do; From and To summarise the attachment before and
	// after it.
	Action   Action
	From, To Where
	// Why is one sentence: what changed on the host, and why that action.
	Why string
	// Plan is the attachment to move the guest to (Switch; Park when it
	// moves), or under --net auto the same attachment decided again
	// (Reattach: ipvtap's plan carries the parent's new MAC); nil
	// otherwise.
	Plan *netsetup.Plan
	// Latency is the time from the burst's first kernel event to this
	// decision (detection included); zero for Begin.
	Latency time.Duration
	// Uplink is the detection the decision was made on.
	Uplink State
}

// MarshalJSON writes the decision in the fixed shape of
// `vmrun net plan --watch --json` (docs/json.md): every key present.
func (d Decision) MarshalJSON() ([]byte, error) {
	f := d.Uplink.Facts
	type uplink struct {
		Name      string              `json:"name"`
		Kind      netsetup.UplinkKind `json:"kind"`
		MAC       string              `json:"mac"`
		Gateway   string              `json:"gateway"`
		SSID      string              `json:"ssid"`
		BSSID     string              `json:"bssid"`
		Up        bool                `json:"up"`
		OperState string              `json:"oper_state"`
	}
	return json.Marshal(struct {
		At        time.Time      `json:"time"`
		Action    Action         `json:"action"`
		From      Where          `json:"from"`
		To        Where          `json:"to"`
		Why       string         `json:"why"`
		LatencyMS float64        `json:"latency_ms"`
		Uplink    uplink         `json:"uplink"`
		Plan      *netsetup.Plan `json:"plan"`
	}{
		d.At, d.Action, d.From, d.To, d.Why, float64(d.Latency.Microseconds()) / 1000,
		uplink{f.Uplink, f.Kind, hostnet.MACString(f.MAC), gateway(d.Uplink), d.Uplink.SSID, d.Uplink.BSSID, f.Up, f.OperState},
		d.Plan,
	})
}

// Where summarises an attachment for a decision line.
type Where struct {
	Mode   netsetup.Mode `json:"mode"`
	Parent string        `json:"parent"`
	Uplink string        `json:"uplink"`
	MAC    string        `json:"mac"`
}

// whereOf summarises plan p.
func whereOf(p netsetup.Plan) Where {
	return Where{Mode: p.Mode, Parent: p.Parent, Uplink: p.Uplink, MAC: hostnet.MACString(p.MAC)}
}

// String is "MODE on PARENT", or the mode alone when it has no parent.
func (w Where) String() string {
	switch {
	case w.Mode == "":
		return "nothing"
	case w.Parent == "":
		return string(w.Mode)
	default:
		return fmt.Sprintf("%s on %s", w.Mode, w.Parent)
	}
}

// Line is the decision as one line of text: time, action, from → to, why.
func (d Decision) Line() string {
	took := ""
	if d.Latency > 0 {
		took = fmt.Sprintf(" (%.1f ms after the event)", float64(d.Latency.Microseconds())/1000)
	}
	if d.Action == Begin {
		return fmt.Sprintf("%s %-8s %s: %s", d.At.Format("15:04:05.000"), d.Action, d.To, d.Why)
	}
	return fmt.Sprintf("%s %-8s %s → %s: %s%s", d.At.Format("15:04:05.000"), d.Action, d.From, d.To, d.Why, took)
}

// macString is a MAC's colon form, "none" when unknown.
func macString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return "none"
	}
	return m.String()
}
