package netsetup

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// allCaps is a privileged host with every capability.
var allCaps = Caps{NetAdmin: true, Tun: true, VhostNet: true, Macvtap: true, IPVtap: true, SysAdmin: true, NetRaw: true, Mknod: true, Passt: "/usr/bin/passt"}

func ethFacts() Facts {
	return Facts{Uplink: "eth0", Exists: true, Index: 2, Kind: UplinkEthernet, LinkType: "device", Up: true,
		OperState: "up", MTU: 1500, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Route: &Route{Family: "inet", Gateway: "192.0.2.1"},
		CPUs: 4, Caps: allCaps}
}

func bridgeFacts() Facts {
	f := ethFacts()
	f.Uplink, f.Kind, f.LinkType, f.MTU = "br0", UplinkBridge, "bridge", 9000
	return f
}

func portFacts() Facts {
	f := ethFacts()
	f.Kind, f.Master, f.MasterUp, f.MasterMTU = UplinkBridgePort, "br0", true, 1450
	return f
}

func wifiFacts(iftype string, fourAddr bool) Facts {
	f := ethFacts()
	f.Uplink, f.Kind, f.Wireless = "wlan0", UplinkWireless, &Wireless{IfType: iftype, FourAddr: fourAddr}
	return f
}

func noRouteFacts() Facts { return Facts{Kind: UplinkNone, CPUs: 2, Caps: allCaps} }

// with applies changes to a copy of f.
func with(f Facts, change func(*Facts)) Facts {
	change(&f)
	return f
}

func named(f Facts) Facts { f.Named = true; return f }

func missing(name string) Facts {
	return Facts{Uplink: name, Named: true, Kind: UplinkNone, CPUs: 2, Caps: allCaps}
}

func TestDecideAuto(t *testing.T) {
	req := Request{Name: "vm1"}
	tests := []struct {
		name       string
		facts      Facts
		req        Request
		mode       Mode
		parent     string
		mtu        int
		reason     string // substring
		notice     string // substring; "" means no notice
		noNotice   bool
		wantVhost  bool
		wantQueues int
	}{
		{name: "bridge uplink", facts: bridgeFacts(), mode: Bridge, parent: "br0", mtu: 9000,
			reason: "br0 is a Linux bridge", noNotice: true, wantVhost: true, wantQueues: 4},
		{name: "bridge port uplink", facts: portFacts(), mode: Bridge, parent: "br0", mtu: 1450,
			reason: "port of bridge br0", noNotice: true, wantVhost: true, wantQueues: 4},
		{name: "bridge port whose bridge is down", facts: with(portFacts(), func(f *Facts) { f.MasterUp = false }),
			mode: User, notice: "bridge br0, which is down"},
		{name: "wired ethernet", facts: ethFacts(), mode: Macvtap, parent: "eth0", mtu: 1500,
			reason: "eth0 is wired Ethernet with no bridge: macvtap (bridge mode) gives the guest its own MAC on the LAN without reconfiguring the host",
			notice: "not from this host", wantVhost: true, wantQueues: 4},
		{name: "veth is ethernet", facts: with(ethFacts(), func(f *Facts) { f.LinkType = "veth" }), mode: Macvtap, parent: "eth0",
			notice: "macvtap limitation", wantVhost: true, wantQueues: 4},
		{name: "no vhost-net", facts: with(ethFacts(), func(f *Facts) { f.Caps.VhostNet = false }), mode: Macvtap, parent: "eth0",
			notice: "macvtap limitation", wantQueues: 4},
		{name: "queues capped at 8", facts: with(ethFacts(), func(f *Facts) { f.CPUs = 64 }), mode: Macvtap, parent: "eth0",
			notice: "macvtap", wantVhost: true, wantQueues: 8},
		{name: "queues from request", facts: ethFacts(), req: Request{Name: "vm1", Queues: 2}, mode: Macvtap, parent: "eth0",
			notice: "macvtap", wantVhost: true, wantQueues: 2},
		{name: "wifi station", facts: wifiFacts(WifiStation, false), mode: IPVtap, parent: "wlan0", mtu: 1500,
			reason:   "wlan0 is a Wi-Fi station (3-address): bridging is impossible (the kernel refuses, EOPNOTSUPP), ipvtap L2 shares its MAC: the guest uses wlan0's own MAC 02:00:00:00:00:01 (not its derived one)",
			noNotice: true, wantVhost: true, wantQueues: 4},
		{name: "wifi ad-hoc", facts: wifiFacts(WifiAdHoc, false), mode: IPVtap, parent: "wlan0",
			reason: "wlan0 is an ad-hoc (IBSS) Wi-Fi interface (3-address): bridging is impossible", noNotice: true, wantVhost: true, wantQueues: 4},
		{name: "wifi station, kernel without ipvlan", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.IPVtap = false }), mode: Routed, parent: "wlan0",
			reason: "this kernel has no ipvlan (ipvtap), so the guest is routed", notice: "load the ipvtap module (modprobe ipvtap)", wantVhost: true, wantQueues: 4},
		{name: "wifi station, no ipvlan, no tun", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.IPVtap, f.Caps.Tun = false, false }), mode: User,
			notice: "/dev/net/tun cannot be opened, which --net routed on wlan0 needs"},
		{name: "wifi station without CAP_NET_ADMIN", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.NetAdmin = false }), mode: User,
			notice: "vmrun lacks CAP_NET_ADMIN (run vmrun as root, or have an administrator run `vmrun setup` once (it grants CAP_NET_ADMIN, CAP_NET_RAW and CAP_MKNOD) and add you to group vmrun), which --net routed on wlan0 needs; using user-mode networking"},
		{name: "wifi station with a macvtap on it", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Uppers = []UpperLink{{Name: "macvtap3", Kind: "macvtap"}} }),
			mode: Routed, parent: "wlan0", reason: "ipvtap cannot be used on it", notice: "wlan0 already carries macvtap link macvtap3, and the kernel does not let ipvlan links share a parent with macvlan links (EBUSY); using routed mode",
			wantVhost: true, wantQueues: 4},
		{name: "wifi station with an L3 ipvlan on it", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Uppers = []UpperLink{{Name: "ipv0", Kind: "ipvlan", IPVlanMode: "l3 bridge"}} }),
			mode: Routed, parent: "wlan0", notice: "an L2 ipvtap would switch ipv0 to L2", wantVhost: true, wantQueues: 4},
		{name: "wifi station with an L2 ipvlan on it", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Uppers = []UpperLink{{Name: "ipv0", Kind: "ipvlan", IPVlanMode: "l2 bridge"}} }),
			mode: IPVtap, parent: "wlan0", noNotice: true, wantVhost: true, wantQueues: 4},
		{name: "wifi station with --mac", facts: wifiFacts(WifiStation, false), req: Request{Name: "vm1", MAC: net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}, MACSet: true},
			mode: Routed, parent: "wlan0", reason: "--mac rules out ipvtap", notice: "drop --mac for ipvtap", wantVhost: true, wantQueues: 4},
		{name: "wifi station without vhost-net", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.VhostNet = false }), mode: IPVtap, parent: "wlan0",
			noNotice: true, wantQueues: 4},
		{name: "wifi 4addr", facts: wifiFacts(WifiStation, true), mode: Macvtap, parent: "wlan0", reason: "4-address mode",
			notice: "macvtap", wantVhost: true, wantQueues: 4},
		{name: "wifi access point", facts: wifiFacts(WifiAP, false), mode: Macvtap, parent: "wlan0", reason: "access point",
			notice: "macvtap", wantVhost: true, wantQueues: 4},
		{name: "wifi AP VLAN", facts: wifiFacts(WifiAPVLAN, false), mode: Macvtap, parent: "wlan0", reason: "access point",
			notice: "macvtap", wantVhost: true, wantQueues: 4},
		{name: "wifi mesh point", facts: wifiFacts(WifiMesh, false), mode: Macvtap, parent: "wlan0", reason: "802.11s mesh point, which carries frames of other MACs",
			notice: "macvtap", wantVhost: true, wantQueues: 4},
		{name: "wifi monitor", facts: wifiFacts(WifiMonitor, false), mode: User, notice: "monitor mode, which captures raw 802.11 frames and is connected to no network, so it cannot carry a guest"},
		{name: "wifi of another type", facts: wifiFacts(WifiOther, false), mode: User, notice: "wlan0 is a Wi-Fi interface in other mode, which cannot carry a guest"},
		{name: "no default route", facts: noRouteFacts(), mode: User, notice: "no default route"},
		{name: "no CAP_NET_ADMIN", facts: with(ethFacts(), func(f *Facts) { f.Caps.NetAdmin = false }), mode: User,
			notice: "lacks CAP_NET_ADMIN (run vmrun as root, or have an administrator run `vmrun setup` once (it grants CAP_NET_ADMIN, CAP_NET_RAW and CAP_MKNOD) and add you to group vmrun), which --net macvtap on eth0 needs; using user-mode networking"},
		{name: "no CAP_NET_ADMIN on bridge", facts: with(bridgeFacts(), func(f *Facts) { f.Caps.NetAdmin = false }), mode: User,
			notice: "--net bridge on br0 needs"},
		{name: "tun unusable on bridge", facts: with(bridgeFacts(), func(f *Facts) { f.Caps.Tun = false }), mode: User,
			notice: "/dev/net/tun cannot be opened, which --net bridge on br0 needs"},
		{name: "tun unusable does not matter to macvtap", facts: with(ethFacts(), func(f *Facts) { f.Caps.Tun = false }),
			mode: Macvtap, parent: "eth0", notice: "macvtap", wantVhost: true, wantQueues: 4},
		{name: "kernel without macvtap", facts: with(ethFacts(), func(f *Facts) { f.Caps.Macvtap = false }), mode: User,
			notice: "cannot create macvtap links"},
		{name: "non-ethernet uplink, root", facts: with(ethFacts(), func(f *Facts) { f.Uplink, f.Kind, f.LinkType = "wg0", UplinkOther, "wireguard" }),
			mode: NAT, parent: NATBridge, reason: "NAT behind this host's address", notice: "at layer 2; using NAT (the guest is not reachable from the LAN)", wantVhost: true, wantQueues: 4},
		{name: "non-ethernet uplink, CAP_NET_ADMIN only", facts: with(ethFacts(), func(f *Facts) {
			f.Uplink, f.Kind, f.LinkType = "wg0", UplinkOther, "wireguard"
			f.Caps.NetRaw, f.Caps.SysAdmin = false, false
		}), mode: User, notice: "wg0 is not an Ethernet device (wireguard), so no guest can sit on it at layer 2, and NAT behind this host needs CAP_NET_RAW and CAP_SYS_ADMIN, which vmrun lacks (run vmrun as root); using user-mode networking"},
		{name: "non-ethernet uplink, no tun", facts: with(ethFacts(), func(f *Facts) {
			f.Uplink, f.Kind, f.LinkType = "ppp0", UplinkOther, "ppp"
			f.Caps.Tun = false
		}), mode: User, notice: "ppp0 is not an Ethernet device (ppp)"},
		{name: "forwards ask for user mode", facts: ethFacts(), req: Request{Name: "vm1", Forwards: []Forward{{Proto: "tcp", HostPort: 2222, GuestPort: 22}}},
			mode: User, reason: "--forward", noNotice: true},
		{name: "named uplink", facts: named(with(ethFacts(), func(f *Facts) { f.Uplink = "eth1"; f.Route = nil })), req: Request{Name: "vm1", Uplink: "eth1"},
			mode: Macvtap, parent: "eth1", notice: "macvtap", wantVhost: true, wantQueues: 4},
		{name: "named bridge port", facts: named(portFacts()), req: Request{Name: "vm1", Uplink: "eth0"}, mode: Bridge, parent: "br0",
			noNotice: true, wantVhost: true, wantQueues: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			if r.Name == "" {
				r = req
			}
			// A macvtap row's notice is the one of a guest the host cannot
			// reach: ask for that (TestMacvtapHostLinkNotice has the rest).
			r.NoHostLink = tt.mode == Macvtap
			p, err := Decide(tt.facts, r)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if p.Mode != tt.mode || p.Parent != tt.parent {
				t.Fatalf("got %s on %q, want %s on %q (reason %q, notice %q)", p.Mode, p.Parent, tt.mode, tt.parent, p.Reason, p.Notice)
			}
			if tt.mtu != 0 && p.MTU != tt.mtu {
				t.Errorf("MTU %d, want %d", p.MTU, tt.mtu)
			}
			if p.Reason == "" || !strings.Contains(p.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", p.Reason, tt.reason)
			}
			if tt.noNotice && p.Notice != "" {
				t.Errorf("unexpected notice %q", p.Notice)
			}
			if !tt.noNotice && (p.Notice == "" || !strings.Contains(p.Notice, tt.notice)) {
				t.Errorf("notice %q does not contain %q", p.Notice, tt.notice)
			}
			if p.Vhost != tt.wantVhost || p.Queues != tt.wantQueues {
				t.Errorf("vhost %v queues %d, want %v %d", p.Vhost, p.Queues, tt.wantVhost, tt.wantQueues)
			}
			checkPlanInvariants(t, p, r)
		})
	}
}

// checkPlanInvariants holds for every plan.
func checkPlanInvariants(t *testing.T, p Plan, r Request) {
	t.Helper()
	if p.Name != r.Name {
		t.Errorf("plan name %q, want %q", p.Name, r.Name)
	}
	if strings.Contains(p.Notice, "\n") || strings.Contains(p.Reason, "\n") {
		t.Errorf("reason/notice must be one line: %q / %q", p.Reason, p.Notice)
	}
	switch p.Mode {
	case Bridge, Macvtap:
		if p.LinkName == "" || len(p.LinkName) > 15 {
			t.Errorf("link name %q", p.LinkName)
		}
		if p.Mode == Bridge && !strings.HasSuffix(p.LinkName, "t") || p.Mode == Macvtap && !strings.HasSuffix(p.LinkName, "m") {
			t.Errorf("link name %q has the wrong role letter for %s", p.LinkName, p.Mode)
		}
		want := DeriveMAC(r.Name)
		if r.MACSet {
			want = r.MAC
		}
		if p.MAC.String() != want.String() {
			t.Errorf("MAC %s, want %s", p.MAC, want)
		}
	case IPVtap:
		if p.LinkName != LinkName(r.Name, RoleIPVtap) {
			t.Errorf("ipvtap link name %q", p.LinkName)
		}
		if p.MAC.String() == DeriveMAC(r.Name).String() || len(p.MAC) != 6 {
			t.Errorf("ipvtap guest MAC %s: it must be the parent's, not the derived one", p.MAC)
		}
		if !strings.Contains(p.Reason, "MAC "+p.MAC.String()) {
			t.Errorf("ipvtap reason %q does not name the guest MAC %s", p.Reason, p.MAC)
		}
	case Routed:
		if p.LinkName != LinkName(r.Name, RoleTap) || p.Queues < 1 {
			t.Errorf("routed plan %+v", p)
		}
	case User, None:
		if p.LinkName != "" || p.Queues != 0 || p.Vhost {
			t.Errorf("%s plan creates links: %+v", p.Mode, p)
		}
	}
}

func TestDecideForced(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	tests := []struct {
		name   string
		facts  Facts
		req    Request
		mode   Mode
		parent string
		reason string
	}{
		{"bridge on the uplink bridge", bridgeFacts(), Request{Mode: Bridge}, Bridge, "br0", "as asked"},
		{"bridge on the uplink's master", portFacts(), Request{Mode: Bridge}, Bridge, "br0", "as asked"},
		{"bridge named", named(with(bridgeFacts(), func(f *Facts) { f.Uplink = "br7"; f.Route = nil })), Request{Mode: Bridge, Parent: "br7"}, Bridge, "br7", "bridge br7"},
		{"macvtap on the uplink", ethFacts(), Request{Mode: Macvtap}, Macvtap, "eth0", "as asked"},
		{"macvtap on a bridge device", named(bridgeFacts()), Request{Mode: Macvtap, Parent: "br0"}, Macvtap, "br0", "as asked"},
		{"macvtap on a 4addr station", named(wifiFacts(WifiStation, true)), Request{Mode: Macvtap, Parent: "wlan0"}, Macvtap, "wlan0", "as asked"},
		{"macvtap with --mac", ethFacts(), Request{Mode: Macvtap, MAC: mac, MACSet: true}, Macvtap, "eth0", "as asked"},
		{"user", ethFacts(), Request{Mode: User}, User, "", "as asked"},
		{"user with forwards", ethFacts(), Request{Mode: User, Forwards: []Forward{{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 8080, GuestPort: 80}}}, User, "", "as asked"},
		{"user without a route", noRouteFacts(), Request{Mode: User}, User, "", "as asked"},
		{"none", ethFacts(), Request{Mode: None}, None, "", "no network"},
		{"ipvtap on the wifi uplink", wifiFacts(WifiStation, false), Request{Mode: IPVtap}, IPVtap, "wlan0", "ipvtap (L2, bridge flag) on wlan0, as asked (--net ipvtap)"},
		{"ipvtap:wlan0", named(wifiFacts(WifiStation, false)), Request{Mode: IPVtap, Parent: "wlan0"}, IPVtap, "wlan0", "as asked"},
		{"ipvtap on a 4addr station", named(wifiFacts(WifiStation, true)), Request{Mode: IPVtap, Parent: "wlan0"}, IPVtap, "wlan0", "as asked"},
		{"ipvtap on an access point", named(wifiFacts(WifiAP, false)), Request{Mode: IPVtap, Parent: "wlan0"}, IPVtap, "wlan0", "as asked"},
		{"ipvtap on a wired veth", named(with(ethFacts(), func(f *Facts) { f.LinkType = "veth"; f.Route = nil })), Request{Mode: IPVtap, Parent: "eth0"}, IPVtap, "eth0", "as asked"},
		{"ipvtap on the wired uplink", ethFacts(), Request{Mode: IPVtap}, IPVtap, "eth0", "the guest uses eth0's own MAC 02:00:00:00:00:01"},
		{"ipvtap on a bridge device", named(bridgeFacts()), Request{Mode: IPVtap, Parent: "br0"}, IPVtap, "br0", "as asked"},
		{"ipvtap next to an L2 ipvlan", named(with(ethFacts(), func(f *Facts) { f.Uppers = []UpperLink{{Name: "ipv0", Kind: "ipvtap", IPVlanMode: "l2 bridge"}} })),
			Request{Mode: IPVtap, Parent: "eth0"}, IPVtap, "eth0", "as asked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			r.Name = "vm1"
			p, err := Decide(tt.facts, r)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if p.Mode != tt.mode || p.Parent != tt.parent || !strings.Contains(p.Reason, tt.reason) {
				t.Fatalf("got %s on %q (%q), want %s on %q (%q)", p.Mode, p.Parent, p.Reason, tt.mode, tt.parent, tt.reason)
			}
			checkPlanInvariants(t, p, r)
		})
	}
}

func TestDecideRefusals(t *testing.T) {
	fw := []Forward{{Proto: "tcp", HostPort: 2222, GuestPort: 22}}
	tests := []struct {
		name  string
		facts Facts
		req   Request
		is    error
		msg   string // exact message when set, else substring in contains
		has   string
	}{
		{name: "bridge that does not exist", facts: missing("br9"), req: Request{Mode: Bridge, Parent: "br9"}, is: ErrNoInterface,
			msg: "bridge br9 does not exist; create it or choose another with --net bridge:NAME"},
		{name: "bridge:IF that is not a bridge", facts: named(ethFacts()), req: Request{Mode: Bridge, Parent: "eth0"}, is: ErrNotBridge,
			has: "eth0 is not a bridge (it is an Ethernet interface)"},
		{name: "bridge:PORT", facts: named(portFacts()), req: Request{Mode: Bridge, Parent: "eth0"}, is: ErrNotBridge, has: "use --net bridge:br0"},
		{name: "bridge on an ethernet uplink", facts: ethFacts(), req: Request{Mode: Bridge}, is: ErrNotBridge, has: "neither a bridge nor a bridge port"},
		{name: "bridge without a route", facts: noRouteFacts(), req: Request{Mode: Bridge}, is: ErrNoUplink, has: "--net bridge:NAME"},
		{name: "bridge down", facts: named(with(bridgeFacts(), func(f *Facts) { f.Up = false })), req: Request{Mode: Bridge, Parent: "br0"}, is: ErrLinkDown, has: "bridge br0 is down"},
		{name: "bridge without privilege", facts: with(bridgeFacts(), func(f *Facts) { f.Caps.NetAdmin = false }), req: Request{Mode: Bridge}, is: ErrNoPrivilege, has: "CAP_NET_ADMIN"},
		{name: "bridge without tun", facts: with(bridgeFacts(), func(f *Facts) { f.Caps.Tun = false }), req: Request{Mode: Bridge}, is: ErrNoKernelSupport, has: "/dev/net/tun"},
		{name: "macvtap on a wifi station", facts: named(wifiFacts(WifiStation, false)), req: Request{Mode: Macvtap, Parent: "wlan0"}, is: ErrUnsuitable,
			msg: "wlan0 is a Wi-Fi station without 4-address mode: the access point drops every frame from the guest's own MAC, so macvtap cannot work there; use --net ipvtap:wlan0 (or --net auto)"},
		{name: "macvtap on a default-route wifi station", facts: wifiFacts(WifiStation, false), req: Request{Mode: Macvtap}, is: ErrUnsuitable, has: "without 4-address mode"},
		{name: "macvtap on a bridge port", facts: named(portFacts()), req: Request{Mode: Macvtap, Parent: "eth0"}, is: ErrUnsuitable,
			has: "eth0 is a port of bridge br0, and macvtap cannot attach to a bridge port"},
		{name: "macvtap on a down interface", facts: named(with(ethFacts(), func(f *Facts) { f.Up = false })), req: Request{Mode: Macvtap, Parent: "eth0"}, is: ErrLinkDown,
			has: "eth0 is down; bring it up"},
		{name: "macvtap on a missing interface", facts: missing("eth5"), req: Request{Mode: Macvtap, Parent: "eth5"}, is: ErrNoInterface, has: "eth5 does not exist"},
		{name: "macvtap without a route", facts: noRouteFacts(), req: Request{Mode: Macvtap}, is: ErrNoUplink, has: "--net macvtap:IF"},
		{name: "macvtap on non-ethernet", facts: named(with(ethFacts(), func(f *Facts) { f.Uplink, f.Kind, f.LinkType = "tun0", UplinkOther, "tuntap" })),
			req: Request{Mode: Macvtap, Parent: "tun0"}, is: ErrUnsuitable, has: "not an Ethernet device"},
		{name: "macvtap without the kernel feature", facts: with(ethFacts(), func(f *Facts) { f.Caps.Macvtap = false }), req: Request{Mode: Macvtap}, is: ErrNoKernelSupport},
		{name: "macvtap without privilege", facts: with(ethFacts(), func(f *Facts) { f.Caps.NetAdmin = false }), req: Request{Mode: Macvtap}, is: ErrNoPrivilege},
		{name: "forwards with macvtap", facts: ethFacts(), req: Request{Mode: Macvtap, Forwards: fw}, is: ErrBadRequest, has: "--forward works only with --net user, nat or auto"},
		{name: "forwards with none", facts: ethFacts(), req: Request{Mode: None, Forwards: fw}, is: ErrBadRequest, has: "--net none"},
		{name: "forward to an IPv6 host address", facts: with(ethFacts(), func(f *Facts) { f.Caps.Passt = "" }), req: Request{Mode: User, Forwards: []Forward{{Proto: "tcp", HostAddr: "::1", HostPort: 1, GuestPort: 2}}},
			is: ErrBadRequest, has: "IPv4"},
		{name: "ipvtap with --mac", facts: wifiFacts(WifiStation, false), req: Request{Mode: IPVtap, MAC: net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}, MACSet: true}, is: ErrBadRequest,
			msg: "--mac cannot be used with --net ipvtap: the guest must use wlan0's own MAC 02:00:00:00:00:01, because ipvlan does not rewrite the guest's source MAC (and a Wi-Fi access point drops frames from any other MAC); drop --mac, or use --net routed"},
		{name: "ipvtap without the kernel module", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.IPVtap = false }), req: Request{Mode: IPVtap}, is: ErrNoKernelSupport,
			msg: "this kernel cannot create ipvtap links: load the ipvtap module (modprobe ipvtap), or use --net routed"},
		{name: "ipvtap without privilege", facts: with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.NetAdmin = false }), req: Request{Mode: IPVtap}, is: ErrNoPrivilege, has: "CAP_NET_ADMIN"},
		{name: "ipvtap on a down interface", facts: named(with(wifiFacts(WifiStation, false), func(f *Facts) { f.Up = false })), req: Request{Mode: IPVtap, Parent: "wlan0"}, is: ErrLinkDown,
			has: "wlan0 is down; bring it up (ip link set wlan0 up)"},
		{name: "ipvtap on a missing interface", facts: missing("wlan5"), req: Request{Mode: IPVtap, Parent: "wlan5"}, is: ErrNoInterface, has: "interface wlan5 does not exist"},
		{name: "ipvtap without a route", facts: noRouteFacts(), req: Request{Mode: IPVtap}, is: ErrNoUplink, has: "--net ipvtap:IF"},
		{name: "ipvtap on a bridge port", facts: named(portFacts()), req: Request{Mode: IPVtap, Parent: "eth0"}, is: ErrUnsuitable, has: "use --net ipvtap:br0"},
		{name: "ipvtap on non-ethernet", facts: named(with(ethFacts(), func(f *Facts) { f.Uplink, f.Kind, f.LinkType = "wg0", UplinkOther, "wireguard" })),
			req: Request{Mode: IPVtap, Parent: "wg0"}, is: ErrUnsuitable, has: "wg0 is not an Ethernet device (wireguard); ipvtap needs one"},
		{name: "ipvtap on a monitor interface", facts: named(wifiFacts(WifiMonitor, false)), req: Request{Mode: IPVtap, Parent: "wlan0"}, is: ErrUnsuitable, has: "monitor mode"},
		{name: "ipvtap next to a macvlan", facts: named(with(wifiFacts(WifiStation, false), func(f *Facts) { f.Uppers = []UpperLink{{Name: "mv0", Kind: "macvlan"}} })),
			req: Request{Mode: IPVtap, Parent: "wlan0"}, is: ErrUnsuitable,
			msg: "wlan0 already carries macvlan link mv0, and the kernel does not let ipvlan links share a parent with macvlan links (EBUSY); use --net routed, or remove that link"},
		{name: "ipvtap next to an L3 ipvlan", facts: named(with(ethFacts(), func(f *Facts) { f.Uppers = []UpperLink{{Name: "ipv0", Kind: "ipvlan", IPVlanMode: "l3 bridge"}} })),
			req: Request{Mode: IPVtap, Parent: "eth0"}, is: ErrUnsuitable, has: "all ipvlan links on one parent share one mode"},
		{name: "ipvtap with forwards", facts: wifiFacts(WifiStation, false), req: Request{Mode: IPVtap, Forwards: fw}, is: ErrBadRequest, has: "--forward works only with --net user, nat or auto"},
		{name: "macvtap next to an ipvlan", facts: named(with(ethFacts(), func(f *Facts) { f.Uppers = []UpperLink{{Name: "ipv0", Kind: "ipvlan", IPVlanMode: "l2 bridge"}} })),
			req: Request{Mode: Macvtap, Parent: "eth0"}, is: ErrUnsuitable, has: "(EBUSY); use --net ipvtap:eth0"},
		{name: "unknown mode", facts: ethFacts(), req: Request{Mode: "vde"}, is: ErrUnknownMode},
		{name: "auto on a missing uplink", facts: missing("eth5"), req: Request{Uplink: "eth5"}, is: ErrNoInterface, has: "interface eth5 does not exist"},
		{name: "auto on a down uplink", facts: named(with(ethFacts(), func(f *Facts) { f.Up = false })), req: Request{Uplink: "eth0"}, is: ErrLinkDown},
		{name: "parent and uplink disagree", facts: named(ethFacts()), req: Request{Mode: Macvtap, Parent: "eth0", Uplink: "eth1"}, is: ErrBadRequest, has: "different interfaces"},
		{name: "facts about another interface", facts: ethFacts(), req: Request{Uplink: "eth1"}, is: ErrBadRequest},
		{name: "bad queue count", facts: ethFacts(), req: Request{Queues: 1000}, is: ErrBadRequest},
		{name: "bad MAC", facts: ethFacts(), req: Request{MAC: net.HardwareAddr{1, 2}, MACSet: true}, is: ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			r.Name = "vm1"
			p, err := Decide(tt.facts, r)
			if err == nil {
				t.Fatalf("Decide succeeded with %s on %q; want an error", p.Mode, p.Parent)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("message\n got %q\nwant %q", err, tt.msg)
			}
			if !strings.Contains(err.Error(), tt.has) {
				t.Errorf("message %q does not contain %q", err, tt.has)
			}
			if msg := err.Error(); len(msg) > 1 && unicode.IsUpper(rune(msg[0])) && unicode.IsLower(rune(msg[1])) {
				t.Errorf("message %q starts with a capital", msg)
			}
		})
	}
	if _, err := Decide(ethFacts(), Request{}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("no name: %v", err)
	}
}

func TestDecideUserPlan(t *testing.T) {
	fws := []Forward{{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 8080, GuestPort: 80}, {Proto: "udp", HostPort: 5353, GuestPort: 53}}
	noPasst := with(ethFacts(), func(f *Facts) { f.Caps.Passt = "" })
	p, err := Decide(noPasst, Request{Mode: User, Name: "vm1", Forwards: fws})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Forwards, fws) {
		t.Errorf("forwards %v", p.Forwards)
	}
	a := Preview(p)
	want := []string{"hostfwd=tcp:127.0.0.1:8080-:80", "hostfwd=udp::5353-:53"}
	if a.Backend != "user" || !reflect.DeepEqual(a.Options, want) || a.MAC.String() != DeriveMAC("vm1").String() {
		t.Errorf("user attachment %+v, want options %q", a, want)
	}
	if a.Undo() != nil {
		t.Error("undo of user mode failed")
	}
}

func TestPreview(t *testing.T) {
	p, err := Decide(ethFacts(), Request{Name: "vm1"})
	if err != nil {
		t.Fatal(err)
	}
	a := Preview(p)
	if a.Backend != "tap" || len(a.Files) != 4 || len(a.VhostFiles) != 4 || a.LinkName != p.LinkName || a.MTU != 1500 {
		t.Errorf("preview %+v", a)
	}
	if n := Preview(Plan{Mode: None}); n.Backend != "" || n.Undo() != nil {
		t.Errorf("preview of none %+v", n)
	}
}

func TestLinkName(t *testing.T) {
	a, b := LinkName("vm1", RoleMacvtap), LinkName("vm2", RoleMacvtap)
	if a == b {
		t.Errorf("two VMs share link name %s", a)
	}
	if a != LinkName("vm1", RoleMacvtap) {
		t.Error("link name is not deterministic")
	}
	if LinkName("vm1", RoleTap) == a {
		t.Error("roles share a name")
	}
	long := LinkName(strings.Repeat("x", 40), RoleShim)
	for _, n := range []string{a, b, long} {
		if len(n) != 12 || !strings.HasPrefix(n, "vmr") {
			t.Errorf("link name %q: want vmr + 8 hex + role, 12 bytes", n)
		}
	}
	h := sha256.Sum256([]byte("vm1"))
	if want := fmt.Sprintf("vmr%xm", h[:4]); a != want {
		t.Errorf("LinkName(vm1) = %q, want %q", a, want)
	}
	if OwnerAlias("vm1") != "vmrun:vm1" {
		t.Errorf("alias %q", OwnerAlias("vm1"))
	}
}

func TestPlanJSON(t *testing.T) {
	p, err := Decide(ethFacts(), Request{Name: "vm1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "mode", "parent", "uplink", "uplink_kind", "mac", "vhost", "queues", "link_name", "reason", "notice", "mtu"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if m["mac"] != DeriveMAC("vm1").String() {
		t.Errorf("mac %v", m["mac"])
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Errorf("round trip\n got %+v\nwant %+v", back, p)
	}
	fb, err := json.Marshal(ethFacts())
	if err != nil {
		t.Fatal(err)
	}
	var f Facts
	if err := json.Unmarshal(fb, &f); err != nil || !reflect.DeepEqual(f, ethFacts()) {
		t.Errorf("facts round trip: %v\n%s", err, fb)
	}
}

func TestModeUsesTap(t *testing.T) {
	for _, m := range Modes() {
		want := m != Auto && m != User && m != None
		if m.UsesTap() != want {
			t.Errorf("%s.UsesTap() = %v", m, m.UsesTap())
		}
	}
}

// TestMacvtapHostLinkNotice: a macvtap guest has a host link unless
// --no-host-link, and only without one is the user told that the host
// cannot reach it.
func TestMacvtapHostLinkNotice(t *testing.T) {
	for _, noHost := range []bool{false, true} {
		p, err := Decide(ethFacts(), Request{Name: "vm1", NoHostLink: noHost})
		if err != nil || p.Mode != Macvtap {
			t.Fatalf("Decide: %s, %v", p.Mode, err)
		}
		if p.NoHostLink != noHost || (p.Notice != "") != noHost || (noHost && !strings.Contains(p.Notice, "not from this host")) {
			t.Errorf("--no-host-link %v: plan's no_host_link %v, notice %q", noHost, p.NoHostLink, p.Notice)
		}
	}
}

// TestLinkNameGen: an odd generation's names differ from an even one's,
// fit the kernel's 15 bytes, and keep the role letter last.
func TestLinkNameGen(t *testing.T) {
	for _, role := range []LinkRole{RoleTap, RoleMacvtap, RoleIPVtap, RoleShim} {
		g0, g1, g2 := LinkNameGen("vm", role, 0), LinkNameGen("vm", role, 1), LinkNameGen("vm", role, 2)
		if g0 != LinkName("vm", role) || g2 != g0 || g1 == g0 || len(g1) > 15 || g1[len(g1)-1] != byte(role) {
			t.Errorf("role %c: generations 0, 1, 2 named %q, %q, %q", role, g0, g1, g2)
		}
	}
	p := Plan{Name: "vm", Mode: Macvtap, LinkName: LinkName("vm", RoleMacvtap)}
	if q := p.WithGen(1); q.Gen != 1 || q.LinkName != LinkNameGen("vm", RoleMacvtap, 1) {
		t.Errorf("WithGen(1) = %+v", q)
	}
	if q := (Plan{Name: "vm", Mode: User}).WithGen(1); q.LinkName != "" {
		t.Errorf("a user plan got link name %q", q.LinkName)
	}
}
