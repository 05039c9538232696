package hostnet

import (
	"github.com/vishvananda/netlink"
)

// UppersOf picks from links the macvlan, macvtap, ipvlan and ipvtap links
// whose parent is interface index (in the same namespace).
func UppersOf(links []netlink.Link, index int) []UpperLink {
	var out []UpperLink
	for _, l := range links {
		a := l.Attrs()
		if a.ParentIndex != index || a.Index == index || a.NetNsID >= 0 {
			continue
		}
		u := UpperLink{Name: a.Name, Kind: l.Type()}
		switch l := l.(type) {
		case *netlink.Macvlan, *netlink.Macvtap:
		case *netlink.IPVlan:
			u.IPVlanMode = IPVlanModeString(l.Mode, l.Flag)
		case *netlink.IPVtap:
			u.IPVlanMode = IPVlanModeString(l.Mode, l.Flag)
		default:
			continue
		}
		out = append(out, u)
	}
	return out
}

// IPVlanModeString names an ipvlan port mode the way iproute2 prints it:
// "l2 bridge", "l3 private", "l3s vepa".
func IPVlanModeString(m netlink.IPVlanMode, f netlink.IPVlanFlag) string {
	mode := map[netlink.IPVlanMode]string{netlink.IPVLAN_MODE_L2: "l2", netlink.IPVLAN_MODE_L3: "l3", netlink.IPVLAN_MODE_L3S: "l3s"}[m]
	if mode == "" {
		mode = "mode-unknown"
	}
	flag := map[netlink.IPVlanFlag]string{netlink.IPVLAN_FLAG_BRIDGE: "bridge", netlink.IPVLAN_FLAG_PRIVATE: "private", netlink.IPVLAN_FLAG_VEPA: "vepa"}[f]
	if flag == "" {
		flag = "flag-unknown"
	}
	return mode + " " + flag
}
