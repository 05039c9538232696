package netsetup

import (
	"fmt"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// stationRow is the auto row of a 3-address Wi-Fi station or ad-hoc
// interface: ipvtap when the kernel has it and the interface can carry an
// ipvlan port; routed otherwise.
func stationRow(f Facts) choice {
	what := fmt.Sprintf("%s is %s (3-address)", f.Uplink, wifiNoun(f.Wireless.IfType))
	if !f.Caps.IPVtap {
		return routedRow(f, what+": bridging is impossible (the kernel refuses, EOPNOTSUPP) and this kernel has no ipvlan (ipvtap), so the guest is routed through the host (a tap, proxy ARP on "+f.Uplink+")",
			"this kernel cannot create ipvtap links; load the ipvtap module (modprobe ipvtap) to put the guest on the LAN with its own DHCP lease; using routed mode")
	}
	if why := hostnet.IPVtapBlocked(f.Uplink, f.Uppers); why != "" {
		return routedRow(f, what+": bridging is impossible (the kernel refuses, EOPNOTSUPP) and ipvtap cannot be used on it, so the guest is routed through the host (a tap, proxy ARP on "+f.Uplink+")",
			why+"; using routed mode")
	}
	if ps := missingPrivs(f.Caps, IPVtap); len(ps) > 0 {
		// Routed needs less (no CAP_SYS_ADMIN); chooseAuto falls back to
		// user mode when even that is missing.
		return routedRow(f, what+": bridging is impossible (the kernel refuses, EOPNOTSUPP) and ipvtap needs root here, so the guest is routed through the host (a tap, proxy ARP on "+f.Uplink+")",
			fmt.Sprintf("ipvtap needs %s (its private network namespace, and packet sockets to learn the guest's addresses), which vmrun lacks: run vmrun as root for it; using routed mode", joinPrivs(ps)))
	}
	return ipvtapRow(f, what+": bridging is impossible (the kernel refuses, EOPNOTSUPP), ipvtap L2 shares its MAC")
}

// ipvtapRow is an ipvtap choice on f.Uplink; reason says why ipvtap.
func ipvtapRow(f Facts, reason string) choice {
	return choice{mode: IPVtap, parent: f.Uplink, mtu: f.MTU,
		reason: fmt.Sprintf("%s: the guest uses %s's own MAC %s (not its derived one) and gets its own IP address on the LAN, leased by vmrun for the VM and handed to the guest's DHCP client by vmrun", reason, f.Uplink, hostnet.MACString(f.MAC))}
}

// routedRow is a routed choice on f.Uplink.
func routedRow(f Facts, reason, notice string) choice {
	return choice{mode: Routed, parent: f.Uplink, mtu: f.MTU, reason: reason, notice: notice}
}

// macvtapBlocked says why no macvtap can be added to f.Uplink because of
// ipvlan links on it (the kernel refuses with EBUSY), or "".
func macvtapBlocked(f Facts) string {
	for _, u := range f.Uppers {
		if u.Kind == "ipvlan" || u.Kind == "ipvtap" {
			return fmt.Sprintf("%s already carries %s link %s, and the kernel does not let macvlan links share a parent with ipvlan links (EBUSY)", f.Uplink, u.Kind, u.Name)
		}
	}
	return ""
}

// forceIPVtap handles --net ipvtap[:IF]: on a Wi-Fi interface (not in
// monitor mode) or any Ethernet-like one, wired included.
func forceIPVtap(f Facts, r Request) (choice, error) {
	dev := f.Uplink
	switch {
	case !f.Named && f.Kind == UplinkNone:
		return choice{}, hostnet.Refuse(ErrNoUplink, "--net ipvtap: there is no default route; name the interface with --net ipvtap:IF")
	case !f.Exists:
		return choice{}, hostnet.Refuse(ErrNoInterface, "interface %s does not exist; choose another with --net ipvtap:IF", dev)
	case f.Kind == UplinkBridgePort:
		return choice{}, hostnet.Refuse(ErrUnsuitable, "%s is a port of bridge %s, and ipvtap cannot attach to a bridge port (the bridge owns its receive path); use --net ipvtap:%s or --net bridge:%s", dev, f.Master, f.Master, f.Master)
	case f.Kind == UplinkOther:
		return choice{}, hostnet.Refuse(ErrUnsuitable, "%s is not an Ethernet device (%s); ipvtap needs one", dev, linkTypeOr(f.LinkType))
	case f.Kind == UplinkWireless && f.Wireless != nil && f.Wireless.IfType == WifiMonitor:
		return choice{}, hostnet.Refuse(ErrUnsuitable, "%s is a Wi-Fi interface in monitor mode, which captures raw 802.11 frames and is connected to no network; choose the interface that is connected with --net ipvtap:IF", dev)
	case len(f.MAC) != 6:
		return choice{}, hostnet.Refuse(ErrUnsuitable, "%s has no Ethernet MAC address, which an ipvtap guest must share; ipvtap needs an Ethernet-like interface", dev)
	case r.MACSet:
		return choice{}, hostnet.Refuse(ErrBadRequest, "--mac cannot be used with --net ipvtap: the guest must use %s's own MAC %s, because ipvlan does not rewrite the guest's source MAC (and a Wi-Fi access point drops frames from any other MAC); drop --mac, or use --net routed", dev, f.MAC)
	case !f.Up:
		return choice{}, hostnet.Refuse(ErrLinkDown, "%s is down; bring it up (ip link set %s up) or choose another with --net ipvtap:IF", dev, dev)
	}
	if err := needCaps(f.Caps, IPVtap); err != nil {
		return choice{}, err
	}
	if !f.Caps.IPVtap {
		return choice{}, hostnet.Refuse(ErrNoKernelSupport, "this kernel cannot create ipvtap links: load the ipvtap module (modprobe ipvtap), or use --net routed")
	}
	if why := hostnet.IPVtapBlocked(f.Uplink, f.Uppers); why != "" {
		return choice{}, hostnet.Refuse(ErrUnsuitable, "%s; use --net routed, or remove that link", why)
	}
	return ipvtapRow(f, fmt.Sprintf("ipvtap (L2, bridge flag) on %s, as asked (--net ipvtap)", dev)), nil
}

// macRoutedRow is auto's row for a Wi-Fi station when --mac is given: an
// ipvtap guest must use the station's MAC, so the guest is routed.
func macRoutedRow(f Facts) choice {
	return routedRow(f, fmt.Sprintf("%s is %s (3-address): bridging is impossible, and --mac rules out ipvtap (whose guest must use %s's MAC), so the guest is routed through the host (a tap, proxy ARP on %s)", f.Uplink, wifiNounFor(f.Wireless), f.Uplink, f.Uplink),
		fmt.Sprintf("--mac rules out ipvtap on %s (its guest must use %s's MAC); drop --mac for ipvtap; using routed mode", f.Uplink, f.Uplink))
}
