package watch

import (
	"net"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/netsetup"
)

// rootCaps are a root vmrun's capabilities on a kernel with every link type.
var rootCaps = netsetup.Caps{NetAdmin: true, Tun: true, VhostNet: true, Macvtap: true, IPVtap: true, SysAdmin: true, NetRaw: true, Mknod: true}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// eth is a wired default-route uplink.
func eth(name, gw string, addrs ...string) State {
	return State{Facts: netsetup.Facts{
		Uplink: name, Exists: true, Index: 2, Kind: netsetup.UplinkEthernet, LinkType: "veth", Up: true, OperState: "up",
		MTU: 1500, MAC: mac("02:00:00:00:00:0a"), Addrs: addrs, Route: &netsetup.Route{Family: "inet", Gateway: gw},
		CPUs: 2, Caps: rootCaps,
	}}
}

// station is a Wi-Fi station associated with ssid through bssid.
func station(name, ssid, bssid string) State {
	s := eth(name, "192.168.1.1", "192.168.1.20/24")
	s.Facts.Kind, s.Facts.LinkType = netsetup.UplinkWireless, "device"
	s.Facts.Wireless = &netsetup.Wireless{IfType: netsetup.WifiStation}
	s.SSID, s.BSSID = ssid, bssid
	return s
}

func tun(name string) State {
	s := eth(name, "", "10.8.0.2/24")
	s.Facts.Kind, s.Facts.LinkType, s.Facts.MAC, s.Facts.OperState = netsetup.UplinkOther, "tun", nil, "unknown"
	return s
}

func noUplink() State {
	return State{Facts: netsetup.Facts{Kind: netsetup.UplinkNone, CPUs: 2, Caps: rootCaps}}
}

func port(name, bridge string) State {
	s := eth(name, "10.0.0.1", "10.0.0.5/24")
	s.Facts.Kind, s.Facts.Master, s.Facts.MasterUp, s.Facts.MasterMTU = netsetup.UplinkBridgePort, bridge, true, 1500
	return s
}

func with(s State, f func(*State)) State {
	s.Facts.Addrs = append([]string(nil), s.Facts.Addrs...)
	f(&s)
	return s
}

func named(s State) State { s.Facts.Named = true; s.Facts.Route = nil; return s }

func TestReplan(t *testing.T) {
	a0 := eth("a0", "10.0.0.1", "10.0.0.5/24", "fd00::5/64")
	auto := netsetup.Request{Name: "vm"}
	explicit := func(m netsetup.Mode, parent string) netsetup.Request {
		return netsetup.Request{Name: "vm", Mode: m, Parent: parent}
	}
	tests := []struct {
		name     string
		r        netsetup.Request
		cur      *netsetup.Plan // nil: Decide(old)
		old, now State
		want     Action
		to       string // the target's summary ("" when the action is Nothing)
		why      string // a part of the reason
	}{
		// What the guest does not see.
		{name: "address renewal", r: auto, old: a0, now: a0, want: Nothing},
		{name: "address replaced within its subnet", r: auto, old: a0, now: with(a0, func(s *State) { s.Facts.Addrs[0] = "10.0.0.9/24" }), want: Nothing},
		{name: "unrelated interface, metric change, worse second default route", r: auto, old: a0, now: a0, want: Nothing},
		{name: "macvtap parent's MAC changes", r: auto, old: a0, now: with(a0, func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0b") }), want: Nothing},
		{name: "user mode for --forward: the route moves", r: netsetup.Request{Name: "vm", Forwards: []netsetup.Forward{{HostPort: 2222, GuestPort: 22}}}, old: a0, now: eth("b0", "10.1.0.1", "10.1.0.5/24"), want: Nothing},
		// Switches.
		{name: "default route moves to another wired uplink", r: auto, old: a0, now: eth("b0", "10.1.0.1", "10.1.0.5/24"), want: Switch, to: "macvtap on b0", why: "the default route moved from a0 to b0"},
		{name: "VPN tun default route", r: auto, old: a0, now: tun("tun0"), want: Switch, to: "nat on vmrnat0", why: "not an Ethernet device"},
		{name: "VPN gone", r: auto, old: tun("tun0"), now: a0, want: Switch, to: "macvtap on a0", why: "moved from tun0 to a0"},
		{name: "bridge port to plain Ethernet", r: auto, old: port("a0", "br0"), now: eth("a0", "10.0.0.1", "10.0.0.5/24"), want: Switch, to: "macvtap on a0", why: "a0 changed from bridge-port to ethernet"},
		{name: "wired to Wi-Fi station", r: auto, old: a0, now: station("wl0", "home", "02:aa:00:00:00:01"), want: Switch, to: "ipvtap on wl0"},
		// Park and reconnect.
		{name: "no uplink left", r: auto, old: a0, now: noUplink(), want: Park, to: "nat on vmrnat0", why: "no default route any more (it left through a0)"},
		{name: "no uplink left, NAT not possible", r: auto, old: with(a0, func(s *State) { s.Facts.Caps.NetRaw = false }), now: with(noUplink(), func(s *State) { s.Facts.Caps.NetRaw = false }), want: Park, to: "user", why: "moves to user, which needs no uplink"},
		{name: "parked, still no uplink", r: auto, cur: &netsetup.Plan{Mode: netsetup.NAT, Parent: netsetup.NATBridge, UplinkKind: netsetup.UplinkNone}, old: noUplink(), now: noUplink(), want: Nothing},
		{name: "parked, an uplink returns", r: auto, cur: &netsetup.Plan{Mode: netsetup.NAT, Parent: netsetup.NATBridge, UplinkKind: netsetup.UplinkNone}, old: noUplink(), now: a0, want: Switch, to: "macvtap on a0", why: "an uplink is back (a0, ethernet)"},
		{name: "parked in user mode, an uplink returns", r: auto, cur: &netsetup.Plan{Mode: netsetup.User, UplinkKind: netsetup.UplinkNone}, old: noUplink(), now: a0, want: Switch, to: "macvtap on a0", why: "an uplink is back (a0, ethernet)"},
		{name: "carrier lost", r: auto, old: a0, now: with(a0, func(s *State) { s.Facts.OperState = "lowerlayerdown" }), want: Park, to: "macvtap on a0", why: "a0 lost its carrier"},
		{name: "carrier back", r: auto, old: with(a0, func(s *State) { s.Facts.OperState = "down" }), now: a0, want: Renew, to: "macvtap on a0", why: "carrier back, the attachment is still valid"},
		{name: "ipvtap: carrier back, same MAC", r: auto, old: with(station("wl0", "home", "02:aa:00:00:00:01"), func(s *State) { s.Facts.OperState = "dormant" }), now: station("wl0", "home", "02:aa:00:00:00:01"), want: Renew, to: "ipvtap on wl0", why: "ipvtap registers its addresses again itself"},
		{name: "ipvtap: carrier back under another MAC", r: auto, old: with(station("wl0", "home", "02:aa:00:00:00:01"), func(s *State) { s.Facts.OperState = "dormant" }), now: with(station("wl0", "home", "02:aa:00:00:00:01"), func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") }), want: Reattach, to: "ipvtap on wl0", why: "MAC changed from 02:00:00:00:00:0a to 02:00:00:00:00:0c"},
		{name: "explicit routed: carrier back", r: explicit(netsetup.Routed, "a0"), cur: &netsetup.Plan{Mode: netsetup.Routed, Parent: "a0", Uplink: "a0"}, old: with(named(a0), func(s *State) { s.Facts.OperState = "lowerlayerdown" }), now: named(a0), want: Reattach, to: "routed on a0", why: "leases the guest's address upstream again"},
		// Same attachment, re-registered.
		{name: "new gateway on the same uplink", r: auto, old: a0, now: with(a0, func(s *State) { s.Facts.Route = &netsetup.Route{Family: "inet", Gateway: "10.0.0.254"} }), want: Renew, to: "macvtap on a0", why: "gateway changed from 10.0.0.1 to 10.0.0.254"},
		{name: "new subnet on the same uplink", r: auto, old: a0, now: with(a0, func(s *State) { s.Facts.Addrs = []string{"10.9.0.5/24", "fd00::5/64"} }), want: Renew, to: "macvtap on a0", why: "subnets changed"},
		{name: "station joins another SSID", r: auto, old: station("wl0", "home", "02:aa:00:00:00:01"), now: station("wl0", "cafe", "02:bb:00:00:00:01"), want: Reattach, to: "ipvtap on wl0", why: `joined SSID "cafe"`},
		{name: "station roams within its SSID", r: auto, old: station("wl0", "home", "02:aa:00:00:00:01"), now: station("wl0", "home", "02:aa:00:00:00:02"), want: Renew, to: "ipvtap on wl0", why: "roamed from access point 02:aa:00:00:00:01 to 02:aa:00:00:00:02"},
		{name: "station's MAC changed while it had no carrier (ipvtap)", r: auto, old: with(station("wl0", "home", "02:aa:00:00:00:01"), func(s *State) { s.Facts.OperState = "dormant"; s.Facts.MAC = mac("02:00:00:00:00:0c") }), cur: &netsetup.Plan{Mode: netsetup.IPVtap, Parent: "wl0", Uplink: "wl0", UplinkKind: netsetup.UplinkWireless, MAC: mac("02:00:00:00:00:0a")}, now: with(station("wl0", "home", "02:aa:00:00:00:01"), func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") }), want: Reattach, to: "ipvtap on wl0", why: "MAC changed from 02:00:00:00:00:0a to 02:00:00:00:00:0c"},
		{name: "station's MAC changes (ipvtap)", r: auto, old: station("wl0", "home", "02:aa:00:00:00:01"), now: with(station("wl0", "home", "02:aa:00:00:00:01"), func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") }), want: Reattach, to: "ipvtap on wl0", why: "MAC changed from 02:00:00:00:00:0a to 02:00:00:00:00:0c"},
		// Moved off layer 2 by the DHCP verdict (routed on a0): it stays there while the LAN does.
		{name: "left L2: an address renewal", r: auto, cur: &netsetup.Plan{Mode: netsetup.Routed, Parent: "a0", Uplink: "a0", UplinkKind: netsetup.UplinkEthernet}, old: a0, now: a0, want: Nothing},
		{name: "left L2: carrier back", r: auto, cur: &netsetup.Plan{Mode: netsetup.Routed, Parent: "a0", Uplink: "a0", UplinkKind: netsetup.UplinkEthernet}, old: with(a0, func(s *State) { s.Facts.OperState = "down" }), now: a0, want: Reattach, to: "routed on a0", why: "routed mode leases"},
		{name: "left L2: a new gateway (a new LAN: L2 again)", r: auto, cur: &netsetup.Plan{Mode: netsetup.Routed, Parent: "a0", Uplink: "a0", UplinkKind: netsetup.UplinkEthernet}, old: a0, now: with(a0, func(s *State) { s.Facts.Route = &netsetup.Route{Family: "inet", Gateway: "10.0.0.254"} }), want: Switch, to: "macvtap on a0", why: "the gateway changed from 10.0.0.1 to 10.0.0.254"},
		{name: "left L2: the route moves", r: auto, cur: &netsetup.Plan{Mode: netsetup.NAT, Parent: netsetup.NATBridge, Uplink: "a0", UplinkKind: netsetup.UplinkEthernet}, old: a0, now: eth("b0", "10.1.0.1", "10.1.0.5/24"), want: Switch, to: "macvtap on b0", why: "moved from a0 to b0"},
		// Explicit modes stay put.
		{name: "explicit macvtap: its parent unchanged", r: explicit(netsetup.Macvtap, "a0"), cur: &netsetup.Plan{Mode: netsetup.Macvtap, Parent: "a0", Uplink: "a0"}, old: named(a0), now: named(a0), want: Nothing},
		{name: "explicit ipvtap: parent's MAC changes", r: explicit(netsetup.IPVtap, "a0"), cur: &netsetup.Plan{Mode: netsetup.IPVtap, Parent: "a0", Uplink: "a0"}, old: named(a0), now: with(named(a0), func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") }), want: Reattach, to: "ipvtap on a0", why: "ipvtap re-registers"},
		{name: "explicit ipvtap: MAC changed while its parent was down", r: explicit(netsetup.IPVtap, "a0"), cur: &netsetup.Plan{Mode: netsetup.IPVtap, Parent: "a0", Uplink: "a0", MAC: mac("02:00:00:00:00:0a")}, old: with(named(a0), func(s *State) { s.Facts.Up = false; s.Facts.MAC = mac("02:00:00:00:00:0c") }), now: with(named(a0), func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") }), want: Reattach, to: "ipvtap on a0", why: "a0 is back: a0's MAC changed from 02:00:00:00:00:0a to 02:00:00:00:00:0c"},
		{name: "explicit ipvtap: back up under a new MAC, no carrier yet", r: explicit(netsetup.IPVtap, "a0"), cur: &netsetup.Plan{Mode: netsetup.IPVtap, Parent: "a0", Uplink: "a0", MAC: mac("02:00:00:00:00:0a")}, old: with(named(a0), func(s *State) { s.Facts.Up = false; s.Facts.OperState = "down" }), now: with(named(a0), func(s *State) { s.Facts.OperState = "down"; s.Facts.MAC = mac("02:00:00:00:00:0c") }), want: Nothing},
		{name: "explicit ipvtap: MAC changed while its parent had no carrier", r: explicit(netsetup.IPVtap, "a0"), cur: &netsetup.Plan{Mode: netsetup.IPVtap, Parent: "a0", Uplink: "a0", MAC: mac("02:00:00:00:00:0a")}, old: with(named(a0), func(s *State) { s.Facts.OperState = "dormant"; s.Facts.MAC = mac("02:00:00:00:00:0c") }), now: with(named(a0), func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") }), want: Reattach, to: "ipvtap on a0", why: "MAC changed from 02:00:00:00:00:0a to 02:00:00:00:00:0c"},
		{name: "explicit ipvtap: down and up under its own MAC", r: explicit(netsetup.IPVtap, "a0"), cur: &netsetup.Plan{Mode: netsetup.IPVtap, Parent: "a0", Uplink: "a0", MAC: mac("02:00:00:00:00:0a")}, old: with(named(a0), func(s *State) { s.Facts.Up = false }), now: named(a0), want: Renew, to: "ipvtap on a0", why: "a0 is back"},
		{name: "explicit routed: a new LAN", r: explicit(netsetup.Routed, "a0"), cur: &netsetup.Plan{Mode: netsetup.Routed, Parent: "a0", Uplink: "a0"}, old: a0, now: with(a0, func(s *State) { s.Facts.Addrs = []string{"10.9.0.5/24"} }), want: Reattach, to: "routed on a0", why: "leases the guest's address upstream again"},
		{name: "explicit routed: parent gone", r: explicit(netsetup.Routed, "a0"), cur: &netsetup.Plan{Mode: netsetup.Routed, Parent: "a0", Uplink: "a0"}, old: named(a0), now: State{Facts: netsetup.Facts{Uplink: "a0", Named: true, Kind: netsetup.UplinkNone}}, want: Park, to: "routed on a0", why: "a0 is gone; --net routed stays on a0"},
		{name: "explicit macvtap: parent down and up", r: explicit(netsetup.Macvtap, "a0"), cur: &netsetup.Plan{Mode: netsetup.Macvtap, Parent: "a0", Uplink: "a0"}, old: with(named(a0), func(s *State) { s.Facts.Up = false }), now: named(a0), want: Renew, to: "macvtap on a0", why: "a0 is back: the guest's carrier is toggled"},
		{name: "explicit routed: parent back", r: explicit(netsetup.Routed, "a0"), cur: &netsetup.Plan{Mode: netsetup.Routed, Parent: "a0", Uplink: "a0"}, old: State{Facts: netsetup.Facts{Uplink: "a0", Named: true, Kind: netsetup.UplinkNone}}, now: named(a0), want: Reattach, to: "routed on a0", why: "a0 is back"},
		{name: "explicit nat: the route moves", r: explicit(netsetup.NAT, ""), cur: &netsetup.Plan{Mode: netsetup.NAT, Parent: "vmrnat0", Uplink: "a0"}, old: a0, now: eth("b0", "10.1.0.1"), want: Nothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := tt.cur
			if cur == nil {
				p, err := netsetup.Decide(tt.old.Facts, tt.r)
				if err != nil {
					t.Fatal(err)
				}
				cur = &p
			}
			d := Replan(*cur, tt.old, tt.now, tt.r)
			if d.Action != tt.want {
				t.Fatalf("action %s (%s), want %s", d.Action, d.Why, tt.want)
			}
			if tt.want == Nothing {
				if d.Plan != nil || d.Why != "" {
					t.Errorf("Nothing with a plan or a reason: %+v", d)
				}
				return
			}
			if got := d.To.String(); got != tt.to {
				t.Errorf("to %q, want %q", got, tt.to)
			}
			if !strings.Contains(d.Why, tt.why) {
				t.Errorf("why %q, want it to contain %q", d.Why, tt.why)
			}
			moves := d.Plan != nil && (d.Plan.Mode != cur.Mode || d.Plan.Parent != cur.Parent)
			if d.Action == Switch && !moves || d.Action == Reattach && moves {
				t.Errorf("a %s whose plan moves the guest: %v (%+v)", d.Action, moves, d.Plan)
			}
			if d.Action == Renew && (d.Plan != nil || d.To != d.From) {
				t.Errorf("a renewal that rebuilds or moves the guest: %+v", d)
			}
		})
	}
}

// TestReplanIPVtapMACFollows: after a MAC change under ipvtap, the plan
// the guest re-registers with carries the parent's new MAC.
func TestReplanIPVtapMACFollows(t *testing.T) {
	old := station("wl0", "home", "02:aa:00:00:00:01")
	now := with(old, func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") })
	r := netsetup.Request{Name: "vm"}
	cur, err := netsetup.Decide(old.Facts, r)
	if err != nil {
		t.Fatal(err)
	}
	d := Replan(cur, old, now, r)
	if d.Plan == nil || d.Plan.MAC.String() != "02:00:00:00:00:0c" {
		t.Fatalf("re-registration plan %+v, want the MAC 02:00:00:00:00:0c", d.Plan)
	}
}

// TestReplanExplicitIPVtapMAC: an explicit ipvtap guest is re-registered
// under its parent's new MAC — the decision carries the plan for it, on
// the same parent — also when the MAC changed while the parent was down
// (the detection before the decision already had the new MAC); the other
// explicit modes get no plan.
func TestReplanExplicitIPVtapMAC(t *testing.T) {
	a0 := named(eth("a0", "10.0.0.1", "10.0.0.5/24"))
	newMAC := func(s *State) { s.Facts.MAC = mac("02:00:00:00:00:0c") }
	r := netsetup.Request{Name: "vm", Mode: netsetup.IPVtap, Parent: "a0"}
	cur, err := netsetup.Decide(a0.Facts, r)
	if err != nil {
		t.Fatal(err)
	}
	downNew := with(a0, func(s *State) { newMAC(s); s.Facts.Up = false })
	for _, old := range []State{a0, downNew} {
		d := Replan(cur, old, with(a0, newMAC), r)
		if d.Action != Reattach || d.Plan == nil || d.Plan.MAC.String() != "02:00:00:00:00:0c" || d.Plan.Mode != netsetup.IPVtap || d.Plan.Parent != "a0" {
			t.Errorf("from up=%v: %s (%s), plan %+v; want a re-attachment on ipvtap a0 with MAC 02:00:00:00:00:0c", old.Facts.Up, d.Action, d.Why, d.Plan)
		}
	}
	m := netsetup.Request{Name: "vm", Mode: netsetup.Macvtap, Parent: "a0"}
	curM, err := netsetup.Decide(a0.Facts, m)
	if err != nil {
		t.Fatal(err)
	}
	if d := Replan(curM, a0, with(a0, newMAC), m); d.Plan != nil || d.Action != Nothing {
		t.Errorf("explicit macvtap, parent's MAC changed: %s with plan %+v, want nothing", d.Action, d.Plan)
	}
}

func TestDecisionLine(t *testing.T) {
	d := Decision{Action: Switch, From: Where{Mode: netsetup.Macvtap, Parent: "a0"}, To: Where{Mode: netsetup.NAT, Parent: "vmrnat0"}, Why: "because"}
	if got, want := d.Line(), "00:00:00.000 switch   macvtap on a0 → nat on vmrnat0: because"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
}

// TestReplanRemembered: a switch onto macvtap goes to what --net auto
// remembered for the network it detected (routed), saying so; a switch
// whose remembered target is where the guest is already is nothing; other
// switches and other actions are left alone.
func TestReplanRemembered(t *testing.T) {
	a0, b0 := eth("a0", "10.0.0.1", "10.0.0.5/24"), eth("b0", "10.1.0.1", "10.1.0.5/24")
	r := netsetup.Request{Name: "vm"}
	onB := func(f netsetup.Facts, p netsetup.Plan) netsetup.Plan {
		if f.Uplink != "b0" {
			return p
		}
		q := netsetup.Plan{Mode: netsetup.Routed, Parent: "b0", Uplink: "b0", Reason: "remembered: routed"}
		return q
	}
	cur, err := netsetup.Decide(a0.Facts, r)
	if err != nil {
		t.Fatal(err)
	}
	d := remembered(Replan(cur, a0, b0, r), cur, onB)
	if d.Action != Switch || d.To.String() != "routed on b0" || !strings.Contains(d.Why, "the default route moved from a0 to b0") || !strings.HasSuffix(d.Why, "; remembered: routed") {
		t.Errorf("route to a remembered network: %s to %s (%s), want a switch to routed on b0 that says it was remembered", d.Action, d.To, d.Why)
	}
	if d := remembered(Replan(cur, a0, a0, r), cur, onB); d.Action != Nothing {
		t.Errorf("a renewal on a network not remembered: %s (%s)", d.Action, d.Why)
	}
	routedB := netsetup.Plan{Mode: netsetup.Routed, Parent: "b0", Uplink: "b0", UplinkKind: netsetup.UplinkEthernet}
	if d := remembered(Decision{Action: Switch, Plan: &netsetup.Plan{Mode: netsetup.Macvtap, Parent: "b0"}, Uplink: b0}, routedB, onB); d.Action != Nothing {
		t.Errorf("a switch to where the guest is already: %s to %s", d.Action, d.To)
	}
	if d := remembered(Decision{Action: Switch, Plan: &netsetup.Plan{Mode: netsetup.NAT}, Uplink: b0}, cur, onB); d.Plan.Mode != netsetup.NAT {
		t.Errorf("a switch to NAT was changed to %s", d.Plan.Mode)
	}
}
