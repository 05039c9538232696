package hostnet

import "fmt"

// UpperLink is a link stacked on the interface (its parent, IFLA_LINK).
type UpperLink struct {
	// Name is the link's name.
	Name string `json:"name"`
	// Kind is the netlink kind: "macvlan", "macvtap", "ipvlan" or "ipvtap".
	Kind string `json:"kind"`
	// IPVlanMode is the mode of the parent's ipvlan port as an ipvlan or
	// ipvtap link reports it: "l2 bridge", "l3 private", "l3s vepa", ...
	IPVlanMode string `json:"ipvlan_mode,omitempty"`
}

// IPVtapPortMode is the only ipvlan port mode an ipvtap guest works in:
// L2 (L3 drops broadcasts and every non-IP frame, so ARP and DHCP; L3S
// hands frames to the slave's own stack, never to the tap) with the
// bridge flag (slaves reach each other, so the host reaches the guest
// through the shim).
const IPVtapPortMode = "l2 bridge"

// IPVtapBlocked says why no ipvtap can be added to uplink, which carries
// uppers, or "": a macvlan or macvtap already on it (the kernel refuses
// with EBUSY), or ipvlan links in another mode (a new slave would switch
// their mode: the mode is per parent). The planner asks it of the facts,
// the ipvtap set-up again of the parent it finds.
func IPVtapBlocked(uplink string, uppers []UpperLink) string {
	for _, u := range uppers {
		switch u.Kind {
		case "macvlan", "macvtap":
			return fmt.Sprintf("%s already carries %s link %s, and the kernel does not let ipvlan links share a parent with macvlan links (EBUSY)", uplink, u.Kind, u.Name)
		case "ipvlan", "ipvtap":
			if u.IPVlanMode != IPVtapPortMode {
				return fmt.Sprintf("%s already carries %s link %s in mode %q, and all ipvlan links on one parent share one mode: an L2 ipvtap would switch %s to L2", uplink, u.Kind, u.Name, u.IPVlanMode, u.Name)
			}
		}
	}
	return ""
}
