package detect

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// fakeKernel answers detection's queries from tables, and records them.
type fakeKernel struct {
	links  []linkInfo
	routes map[string][]routeInfo // by destination; missing = no route
	// routeErr is returned for a destination instead of a result.
	routeErr map[string]error
	wifi     map[int]*Wireless
	wifiErr  error
	upper    map[int][]UpperLink
	c        Caps
	n        int

	lookups []string
}

func (k *fakeKernel) routeGet(dst net.IP) ([]routeInfo, error) {
	k.lookups = append(k.lookups, dst.String())
	if err := k.routeErr[dst.String()]; err != nil {
		return nil, err
	}
	r, ok := k.routes[dst.String()]
	if !ok {
		return nil, errNoRoute
	}
	return r, nil
}

func (k *fakeKernel) linkByName(name string) (linkInfo, error) {
	for _, l := range k.links {
		if l.Name == name {
			return l, nil
		}
	}
	return linkInfo{}, fmt.Errorf("link %q: %w", name, hostnet.ErrNoInterface)
}

func (k *fakeKernel) linkByIndex(index int) (linkInfo, error) {
	for _, l := range k.links {
		if l.Index == index {
			return l, nil
		}
	}
	return linkInfo{}, fmt.Errorf("link #%d: %w", index, hostnet.ErrNoInterface)
}

func (k *fakeKernel) wireless(index int) (*Wireless, error) {
	if k.wifiErr != nil {
		return nil, k.wifiErr
	}
	return k.wifi[index], nil
}

func (k *fakeKernel) uppers(index int) ([]UpperLink, error) { return k.upper[index], nil }

func (k *fakeKernel) caps() Caps { return k.c }
func (k *fakeKernel) cpus() int  { return k.n }

// A small host: lo, eth0 (a port of br0), br0, eth1 (plain), wlan0, wg0, eth2 (down).
func fakeHost() *fakeKernel {
	mac := func(b byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, b} }
	return &fakeKernel{
		links: []linkInfo{
			{Name: "lo", Index: 1, Type: "device", Encap: "loopback", Up: true, MTU: 65536},
			{Name: "eth0", Index: 2, Type: "device", Encap: "ether", Up: true, Oper: "up", MTU: 1500, MAC: mac(2), MasterIndex: 3},
			{Name: "br0", Index: 3, Type: "bridge", Encap: "ether", Up: true, Oper: "up", MTU: 1500, MAC: mac(3)},
			{Name: "eth1", Index: 4, Type: "veth", Encap: "ether", Up: true, Oper: "up", MTU: 1400, MAC: mac(4)},
			{Name: "wlan0", Index: 5, Type: "device", Encap: "ether", Up: true, Oper: "dormant", MTU: 1500, MAC: mac(5)},
			{Name: "wg0", Index: 6, Type: "wireguard", Encap: "none", Up: true, MTU: 1420},
			{Name: "eth2", Index: 7, Type: "device", Encap: "ether", Up: false, Oper: "down", MTU: 1500, MAC: mac(7)},
			{Name: "bond0", Index: 8, Type: "bond", Encap: "ether", Up: true, MTU: 1500, MAC: mac(8)},
			{Name: "eth3", Index: 9, Type: "device", Encap: "ether", Up: true, MTU: 1500, MAC: mac(9), MasterIndex: 8},
		},
		routes: map[string][]routeInfo{},
		wifi:   map[int]*Wireless{5: {IfType: WifiStation}},
		c:      Caps{NetAdmin: true, NetRaw: true, Mknod: true, Tun: true, Macvtap: true},
		n:      2,
	}
}

func TestDetectDefaultRoute(t *testing.T) {
	tests := []struct {
		name   string
		routes map[string][]routeInfo
		uplink string
		kind   UplinkKind
		family string
		gw     string
	}{
		{"ipv4 via bridge", map[string][]routeInfo{probeV4: {{LinkIndex: 3, Gateway: net.ParseIP("192.0.2.1")}}}, "br0", UplinkBridge, "inet", "192.0.2.1"},
		{"ipv4 via veth", map[string][]routeInfo{probeV4: {{LinkIndex: 4}}}, "eth1", UplinkEthernet, "inet", ""},
		{"ipv4 preferred over ipv6", map[string][]routeInfo{probeV4: {{LinkIndex: 4}}, probeV6: {{LinkIndex: 3}}}, "eth1", UplinkEthernet, "inet", ""},
		{"ipv6 only", map[string][]routeInfo{probeV6: {{LinkIndex: 4, Gateway: net.ParseIP("fe80::1")}}}, "eth1", UplinkEthernet, "inet6", "fe80::1"},
		{"via a bridge port", map[string][]routeInfo{probeV4: {{LinkIndex: 2}}}, "eth0", UplinkBridgePort, "inet", ""},
		{"via wifi", map[string][]routeInfo{probeV4: {{LinkIndex: 5}}}, "wlan0", UplinkWireless, "inet", ""},
		{"via wireguard", map[string][]routeInfo{probeV4: {{LinkIndex: 6}}}, "wg0", UplinkOther, "inet", ""},
		{"via a bond port (not a bridge)", map[string][]routeInfo{probeV4: {{LinkIndex: 9}}}, "eth3", UplinkEthernet, "inet", ""},
		{"multipath: first usable", map[string][]routeInfo{probeV4: {{Nexthops: []nexthop{
			{LinkIndex: 4, Dead: true}, {LinkIndex: 7}, {LinkIndex: 99}, {LinkIndex: 3, Gateway: net.ParseIP("192.0.2.9")}, {LinkIndex: 2},
		}}}}, "br0", UplinkBridge, "inet", "192.0.2.9"},
		{"multipath all dead, ipv6 fallback", map[string][]routeInfo{
			probeV4: {{Nexthops: []nexthop{{LinkIndex: 4, Dead: true}}}},
			probeV6: {{LinkIndex: 3}},
		}, "br0", UplinkBridge, "inet6", ""},
		{"local route via lo is not an uplink", map[string][]routeInfo{probeV4: {{LinkIndex: 1}}, probeV6: {{LinkIndex: 4}}}, "eth1", UplinkEthernet, "inet6", ""},
		{"no route", map[string][]routeInfo{}, "", UplinkNone, "", ""},
		{"route via a down link only", map[string][]routeInfo{probeV4: {{LinkIndex: 7}}}, "", UplinkNone, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := fakeHost()
			k.routes = tt.routes
			f, err := detect(k, "")
			if err != nil {
				t.Fatal(err)
			}
			if f.Uplink != tt.uplink || f.Kind != tt.kind || f.Named {
				t.Fatalf("got %q kind %s named %v, want %q kind %s", f.Uplink, f.Kind, f.Named, tt.uplink, tt.kind)
			}
			if tt.kind == UplinkNone {
				if f.Exists || f.Route != nil {
					t.Errorf("no uplink but exists=%v route=%v", f.Exists, f.Route)
				}
				return
			}
			if f.Route == nil || f.Route.Family != tt.family || f.Route.Gateway != tt.gw {
				t.Errorf("route %+v, want %s via %q", f.Route, tt.family, tt.gw)
			}
			if !f.Exists || f.CPUs != 2 || !f.Caps.NetAdmin {
				t.Errorf("facts %+v", f)
			}
		})
	}
}

func TestDetectNamed(t *testing.T) {
	k := fakeHost()
	k.routes = map[string][]routeInfo{probeV4: {{LinkIndex: 4}}}
	k.wifi[5] = &Wireless{IfType: WifiStation, FourAddr: true}

	f, err := detect(k, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Named || f.Kind != UplinkBridgePort || f.Master != "br0" || !f.MasterUp || f.MasterMTU != 1500 || f.Route != nil {
		t.Errorf("eth0: %+v", f)
	}
	if len(k.lookups) != 0 {
		t.Errorf("a named interface needs no route lookup: %v", k.lookups)
	}

	f, err = detect(k, "wlan0")
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != UplinkWireless || f.Wireless == nil || !f.Wireless.FourAddr || f.OperState != "dormant" {
		t.Errorf("wlan0: %+v", f)
	}

	f, err = detect(k, "eth2")
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != UplinkEthernet || f.Up || !f.Exists {
		t.Errorf("eth2: %+v", f)
	}

	f, err = detect(k, "br9")
	if err != nil {
		t.Fatal(err)
	}
	if f.Exists || f.Kind != UplinkNone || f.Uplink != "br9" || !f.Named {
		t.Errorf("br9: %+v", f)
	}
}

func TestDetectErrors(t *testing.T) {
	k := fakeHost()
	boom := errors.New("netlink exploded")
	k.routeErr = map[string]error{probeV4: boom}
	if _, err := detect(k, ""); !errors.Is(err, boom) {
		t.Errorf("route lookup error: %v", err)
	}
	k = fakeHost()
	k.routes = map[string][]routeInfo{probeV4: {{LinkIndex: 4}}}
	k.wifiErr = boom
	if _, err := detect(k, ""); !errors.Is(err, boom) {
		t.Errorf("nl80211 error: %v", err)
	}
}

// TestDetectStation: a default route through a Wi-Fi station gives the
// facts the Wi-Fi station rows of netsetup's TestDecideAuto plan on — the
// station's MAC, the probed capabilities as they are, and the links stacked
// on it.
func TestDetectStation(t *testing.T) {
	k := fakeHost()
	k.routes = map[string][]routeInfo{probeV4: {{LinkIndex: 5}}}
	f, err := detect(k, "")
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != UplinkWireless || f.Uplink != "wlan0" || f.Wireless == nil || f.Wireless.IfType != WifiStation ||
		f.MAC.String() != "02:00:00:00:00:05" || f.Caps.IPVtap || len(f.Uppers) != 0 {
		t.Errorf("without ipvtap: %+v", f)
	}
	k.c.IPVtap, k.c.SysAdmin, k.c.NetRaw = true, true, true
	if f, err = detect(k, ""); err != nil {
		t.Fatal(err)
	}
	if !f.Caps.IPVtap || !f.Caps.SysAdmin || !f.Caps.NetRaw {
		t.Errorf("with ipvtap: caps %+v", f.Caps)
	}
	// A macvtap already on the station (ipvlan cannot join it: EBUSY).
	k.upper = map[int][]UpperLink{5: {{Name: "macvtap0", Kind: "macvtap"}}}
	if f, err = detect(k, ""); err != nil {
		t.Fatal(err)
	}
	if len(f.Uppers) != 1 || f.Uppers[0].Name != "macvtap0" {
		t.Errorf("uppers %+v", f.Uppers)
	}
}

// TestDetectUppers: the links stacked on an Ethernet uplink are reported; a
// non-Ethernet uplink is not asked for them.
func TestDetectUppers(t *testing.T) {
	k := fakeHost()
	k.upper = map[int][]UpperLink{4: {{Name: "ipv0", Kind: "ipvlan", IPVlanMode: "l3 bridge"}}, 6: {{Name: "x", Kind: "macvlan"}}}
	f, err := detect(k, "eth1")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Uppers) != 1 || f.Uppers[0].IPVlanMode != "l3 bridge" {
		t.Errorf("eth1 uppers %+v", f.Uppers)
	}
	if f, err = detect(k, "wg0"); err != nil || f.Uppers != nil {
		t.Errorf("wg0: %+v, %v", f.Uppers, err)
	}
}
