package detect

import (
	"net"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// UplinkKind classifies the interface a guest would attach to.
type UplinkKind string

// The uplink kinds Detect reports.
const (
	// UplinkBridge is a Linux bridge.
	UplinkBridge UplinkKind = "bridge"
	// UplinkBridgePort is an interface enslaved to a Linux bridge (Facts.Master).
	UplinkBridgePort UplinkKind = "bridge-port"
	// UplinkEthernet is wired Ethernet: a NIC, a veth, a bond, a VLAN, ...
	UplinkEthernet UplinkKind = "ethernet"
	// UplinkWireless is an 802.11 interface known to nl80211 (Facts.Wireless).
	UplinkWireless UplinkKind = "wireless"
	// UplinkOther is an interface no guest can sit on at layer 2 (loopback,
	// a tun or WireGuard device, PPP): not Ethernet-framed.
	UplinkOther UplinkKind = "other"
	// UplinkNone means there is no uplink: no default route, or the named
	// interface does not exist.
	UplinkNone UplinkKind = "none"
)

// Wi-Fi interface types (nl80211 iftype) as Detect reports them.
const (
	WifiStation = "station"
	WifiAdHoc   = "ad-hoc"
	WifiAP      = "ap"
	WifiAPVLAN  = "ap-vlan"
	WifiMesh    = "mesh-point"
	WifiMonitor = "monitor"
	WifiOther   = "other"
)

// Wireless describes a Wi-Fi uplink.
type Wireless struct {
	// IfType is the nl80211 interface type: WifiStation, WifiAdHoc, WifiAP, ...
	IfType string `json:"iftype"`
	// FourAddr reports 4-address (WDS) mode, which lets frames carry foreign MACs.
	FourAddr bool `json:"4addr"`
}

// UpperLink is a link stacked on the interface (its parent, IFLA_LINK).
type UpperLink = hostnet.UpperLink

// Route is the route lookup that picked the uplink.
type Route struct {
	// Family is "inet" or "inet6".
	Family string `json:"family"`
	// Gateway is the next hop, "" for an on-link route.
	Gateway string `json:"gateway,omitempty"`
}

// Caps are the host capabilities that decide which modes can work, each
// probed once by Detect (never guessed from kernel versions): the
// process's privileges (NetAdmin, NetRaw, Mknod, SysAdmin: an explicit
// input of Decide, see Needs) and the kernel's features.
type Caps struct {
	// NetAdmin: the process has CAP_NET_ADMIN.
	NetAdmin bool `json:"net_admin"`
	// Tun: /dev/net/tun opens.
	Tun bool `json:"tun"`
	// TunDenied: /dev/net/tun exists but this user may not open it
	// read-write (a permissions problem, not a missing module).
	TunDenied bool `json:"tun_denied,omitempty"`
	// VhostNet: /dev/vhost-net opens.
	VhostNet bool `json:"vhost_net"`
	// Macvtap: a macvtap link could be created (in a throwaway namespace).
	Macvtap bool `json:"macvtap"`
	// IPVtap: an ipvtap link could be created (in a throwaway namespace).
	IPVtap bool `json:"ipvtap"`
	// SysAdmin: the process has CAP_SYS_ADMIN (ipvtap's private network
	// namespace and its sysfs).
	SysAdmin bool `json:"sys_admin"`
	// NetRaw: the process has CAP_NET_RAW (packet sockets: routed mode's
	// DHCP client and responder, ipvtap's learner).
	NetRaw bool `json:"net_raw"`
	// Mknod: the process has CAP_MKNOD (a macvtap's private device node).
	Mknod bool `json:"mknod"`
	// Passt is the path of the passt binary, "" when it is not installed.
	Passt string `json:"passt,omitempty"`
}

// Facts is what Detect learned about the host: the interface that matters
// (the default-route interface, or the one the user named) and the
// capabilities. Decide is a pure function of Facts and a Request.
type Facts struct {
	// Uplink is the interface's name; "" when there is no default route.
	Uplink string `json:"uplink"`
	// Named: the user named the interface (--uplink, --net MODE:IF) instead
	// of leaving it to the default route.
	Named bool `json:"named,omitempty"`
	// Exists: the interface exists (always true for a default-route uplink).
	Exists bool `json:"exists"`
	// Index is the interface index in vmrun's network namespace.
	Index int `json:"index,omitempty"`
	// Kind classifies the interface.
	Kind UplinkKind `json:"kind"`
	// LinkType is the kernel's link kind ("veth", "bridge", "bond", "device", ...).
	LinkType string `json:"link_type,omitempty"`
	// Up: administratively up (IFF_UP).
	Up bool `json:"up"`
	// OperState is the operational state ("up", "down", "dormant", ...).
	OperState string `json:"oper_state,omitempty"`
	// MTU of the interface.
	MTU int `json:"mtu,omitempty"`
	// MAC of the interface.
	MAC net.HardwareAddr `json:"-"`
	// Addrs are the interface's global addresses, ADDR/PREFIX (routed
	// mode routes guests into their subnets).
	Addrs []string `json:"addrs,omitempty"`
	// Master is the bridge an UplinkBridgePort belongs to.
	Master string `json:"master,omitempty"`
	// MasterUp: the Master bridge is administratively up.
	MasterUp bool `json:"master_up,omitempty"`
	// MasterMTU is the Master bridge's MTU.
	MasterMTU int `json:"master_mtu,omitempty"`
	// Route is the lookup that chose a default-route uplink; nil otherwise.
	Route *Route `json:"route,omitempty"`
	// Wireless is set for UplinkWireless.
	Wireless *Wireless `json:"wireless,omitempty"`
	// Uppers are the macvlan, macvtap, ipvlan and ipvtap links stacked on
	// the interface in vmrun's namespace: ipvlan and macvlan links cannot
	// share a parent (EBUSY), and all ipvlan links on one parent share one
	// mode.
	Uppers []UpperLink `json:"uppers,omitempty"`
	// CPUs is the number of host CPUs (the default queue count).
	CPUs int `json:"cpus"`
	// Caps are the host's capabilities.
	Caps Caps `json:"caps"`
}

// MarshalJSON writes MAC in its usual colon form (omitted when unknown).
func (f Facts) MarshalJSON() ([]byte, error) {
	type plain Facts
	return hostnet.MarshalWithMAC(plain(f), f.MAC, true)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Facts) UnmarshalJSON(b []byte) error {
	type plain Facts
	var v plain
	mac, err := hostnet.UnmarshalWithMAC(b, &v)
	*f = Facts(v)
	f.MAC = mac
	return err
}
