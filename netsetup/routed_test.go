package netsetup

import (
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
)

// lanFacts is ethFacts with the uplink's addresses: 10.77.0.2/24 and an
// IPv6 one.
func lanFacts() Facts {
	f := ethFacts()
	f.Addrs = []string{"10.77.0.2/24", "fd77::2/64"}
	return f
}

func cidr(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func TestDecideRouted(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 9, 8, 7}
	wifi := with(wifiFacts(WifiStation, false), func(f *Facts) { f.Addrs = []string{"10.77.0.2/24"} })
	tests := []struct {
		name      string
		facts     Facts
		req       Request
		parent    string
		reason    string // substring
		notice    string // substring; "" means none
		addr      GuestAddrSource
		guestIP   string
		vhost     bool
		queues    int
		wantMAC   net.HardwareAddr
		wantMTU   int
		wantNamed bool
	}{
		{name: "default-route uplink", facts: lanFacts(), req: Request{Mode: Routed}, parent: "eth0",
			reason: "leases the guest an address from eth0's DHCP server", addr: GuestAddrUpstream, vhost: true, queues: 4, wantMTU: 1500},
		{name: "named uplink", facts: named(with(lanFacts(), func(f *Facts) { f.Uplink = "eth1"; f.Route = nil })),
			req: Request{Mode: Routed, Parent: "eth1"}, parent: "eth1", reason: "routed to eth1", addr: GuestAddrUpstream, vhost: true, queues: 4},
		{name: "wifi station", facts: wifi, req: Request{Mode: Routed}, parent: "wlan0",
			reason: "the LAN sees only this host's MAC", addr: GuestAddrUpstream, vhost: true, queues: 4},
		{name: "wifi station named", facts: named(wifi), req: Request{Mode: Routed, Parent: "wlan0"}, parent: "wlan0",
			reason: "proxy ARP", addr: GuestAddrUpstream, vhost: true, queues: 4},
		{name: "bridge uplink", facts: with(bridgeFacts(), func(f *Facts) { f.Addrs = []string{"10.77.0.2/24"} }), req: Request{Mode: Routed},
			parent: "br0", reason: "routed to br0", addr: GuestAddrUpstream, vhost: true, queues: 4, wantMTU: 9000},
		{name: "static address", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "10.77.0.60/24")}, parent: "eth0",
			reason: "the guest uses 10.77.0.60 (--guest-ip)", addr: GuestAddrStatic, guestIP: "10.77.0.60", vhost: true, queues: 4},
		{name: "static address, any prefix", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "10.77.0.61/32")}, parent: "eth0",
			reason: "10.77.0.61", addr: GuestAddrStatic, guestIP: "10.77.0.61", vhost: true, queues: 4},
		{name: "static address outside the subnet", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "10.99.0.5/24")}, parent: "eth0",
			reason: "10.99.0.5", notice: "--guest-ip 10.99.0.5 is outside eth0's subnets (10.77.0.0/24): proxy ARP cannot make it reachable there",
			addr: GuestAddrStatic, guestIP: "10.99.0.5", vhost: true, queues: 4},
		{name: "no vhost-net", facts: with(lanFacts(), func(f *Facts) { f.Caps.VhostNet = false }), req: Request{Mode: Routed, Queues: 2},
			parent: "eth0", reason: "proxy ARP", addr: GuestAddrUpstream, queues: 2},
		{name: "given MAC", facts: lanFacts(), req: Request{Mode: Routed, MAC: mac, MACSet: true}, parent: "eth0",
			reason: "proxy ARP", addr: GuestAddrUpstream, vhost: true, queues: 4, wantMAC: mac},
		{name: "macvtap missing does not matter", facts: with(lanFacts(), func(f *Facts) { f.Caps.Macvtap, f.Caps.IPVtap = false, false }),
			req: Request{Mode: Routed}, parent: "eth0", reason: "proxy ARP", addr: GuestAddrUpstream, vhost: true, queues: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			r.Name = "vm1"
			p, err := Decide(tt.facts, r)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if p.Mode != Routed || p.Parent != tt.parent {
				t.Fatalf("got %s on %q, want routed on %q (reason %q)", p.Mode, p.Parent, tt.parent, p.Reason)
			}
			if !strings.Contains(p.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", p.Reason, tt.reason)
			}
			if tt.notice == "" && p.Notice != "" || !strings.Contains(p.Notice, tt.notice) {
				t.Errorf("notice %q, want %q", p.Notice, tt.notice)
			}
			if p.LinkName != LinkName("vm1", RoleTap) {
				t.Errorf("link name %q, want the VM's tap name %q", p.LinkName, LinkName("vm1", RoleTap))
			}
			want := tt.wantMAC
			if want == nil {
				want = DeriveMAC("vm1")
			}
			if p.MAC.String() != want.String() {
				t.Errorf("MAC %s, want %s", p.MAC, want)
			}
			if p.Vhost != tt.vhost || p.Queues != tt.queues {
				t.Errorf("vhost %v queues %d, want %v %d", p.Vhost, p.Queues, tt.vhost, tt.queues)
			}
			if tt.wantMTU != 0 && p.MTU != tt.wantMTU {
				t.Errorf("MTU %d, want %d", p.MTU, tt.wantMTU)
			}
			if p.GuestAddr != tt.addr || ipString(p.GuestIP) != tt.guestIP {
				t.Errorf("guest address %s %q, want %s %q", p.GuestAddr, ipString(p.GuestIP), tt.addr, tt.guestIP)
			}
			if p.GuestIP != nil && len(p.GuestIP) != net.IPv4len {
				t.Errorf("guest IP %v is not in 4-byte form", []byte(p.GuestIP))
			}
			if p.Uplink != tt.facts.Uplink || p.Forwards != nil {
				t.Errorf("plan %+v", p)
			}
			checkPlanInvariants(t, p, r)
			if err := checkRoutedPlan(p); err != nil {
				t.Errorf("Apply would refuse the plan: %v", err)
			}
		})
	}
}

func TestDecideRoutedRefusals(t *testing.T) {
	tests := []struct {
		name  string
		facts Facts
		req   Request
		is    error
		msg   string // exact, when set
		has   string
	}{
		{name: "no CAP_NET_ADMIN", facts: with(lanFacts(), func(f *Facts) { f.Caps.NetAdmin = false }), req: Request{Mode: Routed}, is: ErrNoPrivilege,
			msg: "--net routed needs CAP_NET_ADMIN, which vmrun lacks; run vmrun as root, or have an administrator run `vmrun setup` once (it grants CAP_NET_ADMIN, CAP_NET_RAW and CAP_MKNOD) and add you to group vmrun, or use --net user"},
		{name: "no tun", facts: with(lanFacts(), func(f *Facts) { f.Caps.Tun = false }), req: Request{Mode: Routed}, is: ErrNoKernelSupport,
			msg: "--net routed needs /dev/net/tun, which cannot be opened; load the tun module (modprobe tun) or use --net user"},
		{name: "tun not permitted", facts: with(lanFacts(), func(f *Facts) { f.Caps.Tun, f.Caps.TunDenied = false, true }), req: Request{Mode: Routed}, is: ErrNoPrivilege,
			msg: "--net routed needs /dev/net/tun, which this user may not open read-write; run vmrun as root, or restore the device's usual mode (chmod 0666 /dev/net/tun), or use --net user"},
		{name: "missing interface", facts: missing("eth5"), req: Request{Mode: Routed, Parent: "eth5"}, is: ErrNoInterface,
			msg: "interface eth5 does not exist; choose another with --net routed:IF"},
		{name: "missing uplink", facts: missing("eth5"), req: Request{Mode: Routed, Uplink: "eth5"}, is: ErrNoInterface, has: "eth5 does not exist"},
		{name: "down", facts: named(with(lanFacts(), func(f *Facts) { f.Up = false })), req: Request{Mode: Routed, Parent: "eth0"}, is: ErrLinkDown,
			msg: "eth0 is down; bring it up (ip link set eth0 up) or choose another with --net routed:IF"},
		{name: "no default route", facts: noRouteFacts(), req: Request{Mode: Routed}, is: ErrNoUplink, has: "name the uplink with --net routed:IF"},
		{name: "no address", facts: ethFacts(), req: Request{Mode: Routed}, is: ErrNoAddress,
			msg: "eth0 has no IPv4 address, so there is no LAN to route the guest into; wait until eth0 is configured, or choose another interface with --net routed:IF"},
		{name: "IPv6 address only", facts: with(ethFacts(), func(f *Facts) { f.Addrs = []string{"fd77::2/64"} }), req: Request{Mode: Routed}, is: ErrNoAddress},
		{name: "bridge port", facts: named(with(portFacts(), func(f *Facts) { f.Addrs = nil })), req: Request{Mode: Routed, Parent: "eth0"}, is: ErrUnsuitable,
			has: "use --net routed:br0"},
		{name: "not ethernet", facts: named(with(lanFacts(), func(f *Facts) { f.Uplink, f.Kind, f.LinkType = "wg0", UplinkOther, "wireguard" })),
			req: Request{Mode: Routed, Parent: "wg0"}, is: ErrUnsuitable, has: "wg0 is not an Ethernet device (wireguard)"},
		{name: "gateway", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "10.77.0.60/24"), Gateway: net.ParseIP("10.77.0.1")}, is: ErrBadRequest,
			msg: "--gateway has no meaning with --net routed: the guest's gateway is always 169.254.0.1, vmrun's end of its tap; drop --gateway"},
		{name: "forwards", facts: lanFacts(), req: Request{Mode: Routed, Forwards: []Forward{{Proto: "tcp", HostPort: 2222, GuestPort: 22}}}, is: ErrBadRequest,
			has: "--forward works only with --net user, nat or auto: with --net routed"},
		{name: "IPv6 guest address", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "fd77::60/64")}, is: ErrBadRequest, has: "IPv4 address only"},
		{name: "the host's own address", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "10.77.0.2/24")}, is: ErrBadRequest,
			msg: "--guest-ip 10.77.0.2 is eth0's own address; give the guest an unused address of eth0's LAN"},
		{name: "network address", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "10.77.0.0/24")}, is: ErrBadRequest, has: "network or broadcast address of eth0's subnet 10.77.0.0/24"},
		{name: "broadcast address", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "10.77.0.255/24")}, is: ErrBadRequest, has: "broadcast"},
		{name: "link-local guest address", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "169.254.0.1/32")}, is: ErrBadRequest, has: "not a unicast address"},
		{name: "multicast guest address", facts: lanFacts(), req: Request{Mode: Routed, GuestIP: cidr(t, "224.0.0.9/32")}, is: ErrBadRequest, has: "not a unicast address"},
		{name: "guest-ip with macvtap", facts: lanFacts(), req: Request{Mode: Macvtap, GuestIP: cidr(t, "10.77.0.60/24")}, is: ErrBadRequest,
			msg: "--guest-ip works only where vmrun hands the guest its address (--net routed); with --net macvtap the guest sits on the LAN and configures its address itself: set it inside the guest, or use --net routed"},
		{name: "guest-ip with auto choosing macvtap", facts: lanFacts(), req: Request{GuestIP: cidr(t, "10.77.0.60/24")}, is: ErrBadRequest, has: "with --net macvtap"},
		{name: "guest-ip with bridge", facts: with(bridgeFacts(), func(f *Facts) { f.Addrs = []string{"10.77.0.2/24"} }), req: Request{Mode: Bridge, GuestIP: cidr(t, "10.77.0.60/24")},
			is: ErrBadRequest, has: "with --net bridge"},
		{name: "guest-ip with user", facts: lanFacts(), req: Request{Mode: User, GuestIP: cidr(t, "10.77.0.60/24")}, is: ErrBadRequest, has: "10.0.2.15"},
		{name: "gateway with user", facts: lanFacts(), req: Request{Mode: User, GuestIP: cidr(t, "10.77.0.60/24"), Gateway: net.ParseIP("10.77.0.1")}, is: ErrBadRequest, has: "--guest-ip does not apply"},
		{name: "guest-ip with none", facts: lanFacts(), req: Request{Mode: None, GuestIP: cidr(t, "10.77.0.60/24")}, is: ErrBadRequest, has: "--net none"},
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
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message %q is not one line", err)
			}
		})
	}
}

// TestDecideAutoUnchangedByRouted: the auto rows do not pick routed (the
// Wi-Fi rows that will are not this mode's to add), with or without
// addresses on the uplink.
func TestDecideAutoUnchangedByRouted(t *testing.T) {
	for _, f := range []Facts{lanFacts(), ethFacts(), with(wifiFacts(WifiStation, false), func(f *Facts) { f.Addrs = []string{"10.77.0.2/24"} })} {
		p, err := Decide(f, Request{Name: "vm1"})
		if err != nil || p.Mode == Routed || p.GuestAddr != "" || p.GuestIP != nil {
			t.Errorf("auto on %s: %+v, %v", f.Uplink, p, err)
		}
	}
}

func TestRoutedPlanJSON(t *testing.T) {
	for _, r := range []Request{
		{Name: "vm1", Mode: Routed, GuestIP: cidr(t, "10.77.0.60/24")},
		{Name: "vm1", Mode: Routed},
	} {
		p, err := Decide(lanFacts(), r)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Plan
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.GuestIP != nil {
			back.GuestIP = back.GuestIP.To4()
		}
		if !reflect.DeepEqual(back, p) {
			t.Errorf("round trip\n got %+v\nwant %+v\n%s", back, p, b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["guest_addr"] != string(p.GuestAddr) || (p.GuestIP != nil) != (m["guest_ip"] == p.GuestIP.String()) {
			t.Errorf("JSON %s", b)
		}
	}
	f := lanFacts()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back Facts
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, f) || !strings.Contains(string(b), `"addrs":["10.77.0.2/24","fd77::2/64"]`) {
		t.Errorf("facts round trip: %v\n%s", err, b)
	}
}

func TestCheckRoutedPlan(t *testing.T) {
	for _, p := range []Plan{
		{GuestAddr: ""},
		{GuestAddr: GuestAddrStatic},
		{GuestAddr: GuestAddrStatic, GuestIP: net.ParseIP("fd00::1")},
		{GuestAddr: GuestAddrStatic, GuestIP: net.ParseIP("169.254.9.9")},
		{GuestAddr: "carrier-pigeon"},
	} {
		if err := checkRoutedPlan(p); !errors.Is(err, ErrBadRequest) {
			t.Errorf("checkRoutedPlan(%s %v) = %v, want ErrBadRequest", p.GuestAddr, p.GuestIP, err)
		}
	}
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
