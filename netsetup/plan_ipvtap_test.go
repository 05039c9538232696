package netsetup

import (
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// TestIPVtapPlan: an ipvtap plan carries the parent's MAC, its owned link
// name, queues and vhost, and --guest-ip, --gateway and --no-host-link;
// it survives JSON (net plan --json) and previews as a tap attachment.
func TestIPVtapPlan(t *testing.T) {
	ip, gip, _ := net.ParseCIDR("192.168.1.50/24")
	gip.IP = ip.To4()
	f := wifiFacts(WifiStation, false)
	r := Request{Name: "vm1", Mode: IPVtap, GuestIP: gip, Gateway: net.ParseIP("192.168.1.1"), NoHostLink: true, Queues: 2}
	p, err := Decide(f, r)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != IPVtap || p.Parent != "wlan0" || p.MAC.String() != f.MAC.String() || p.LinkName != LinkName("vm1", RoleIPVtap) ||
		p.Queues != 2 || !p.Vhost || p.GuestIP.String() != "192.168.1.50" || !p.Gateway.Equal(net.ParseIP("192.168.1.1")) || !p.NoHostLink {
		t.Fatalf("plan %+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"guest_ip":"192.168.1.50"`, `"gateway":"192.168.1.1"`, `"no_host_link":true`, `"mac":"02:00:00:00:00:01"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.GuestIP.Equal(p.GuestIP) {
		t.Errorf("guest IP %v after the round trip, want %v", back.GuestIP, p.GuestIP)
	}
	back.GuestIP = p.GuestIP // 16 bytes from JSON, 4 from the plan
	if !reflect.DeepEqual(back, p) {
		t.Errorf("round trip\n got %+v\nwant %+v", back, p)
	}
	a := Preview(p)
	if a.Backend != "tap" || len(a.Files) != 2 || len(a.VhostFiles) != 2 || a.MAC.String() != f.MAC.String() {
		t.Errorf("preview %+v", a)
	}

	// auto on a station carries them too.
	r.Mode, r.Queues = Auto, 0
	if p, err = Decide(f, r); err != nil || p.Mode != IPVtap || p.GuestIP == nil || !p.NoHostLink || p.Queues != 4 {
		t.Errorf("auto: %+v, %v", p, err)
	}
}

func TestIPVlanModeString(t *testing.T) {
	f := wifiFacts(WifiStation, false)
	for _, tt := range []struct {
		uppers  []UpperLink
		blocked string
	}{
		{nil, ""},
		{[]UpperLink{{Name: "a", Kind: "ipvtap", IPVlanMode: "l2 bridge"}}, ""},
		{[]UpperLink{{Name: "a", Kind: "ipvlan", IPVlanMode: "l2 private"}}, `mode "l2 private"`},
		{[]UpperLink{{Name: "a", Kind: "ipvlan", IPVlanMode: "l3s bridge"}}, `mode "l3s bridge"`},
		{[]UpperLink{{Name: "m", Kind: "macvlan"}}, "macvlan link m"},
	} {
		f.Uppers = tt.uppers
		got := hostnet.IPVtapBlocked(f.Uplink, f.Uppers)
		if (tt.blocked == "") != (got == "") || !strings.Contains(got, tt.blocked) {
			t.Errorf("uppers %+v: %q, want %q", tt.uppers, got, tt.blocked)
		}
	}
}

// TestIPVtapNeedsRoot: without CAP_SYS_ADMIN (an unprivileged vmrun with
// `vmrun setup`'s file capabilities) auto routes a station's guest instead,
// and --net ipvtap says what it needs; without CAP_NET_RAW too (what an
// older `vmrun setup` granted) routed cannot be set up either, and auto
// falls back to user mode, naming what `vmrun setup` grants.
func TestIPVtapNeedsRoot(t *testing.T) {
	f := with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.SysAdmin = false })
	p, err := Decide(f, Request{Name: "vm1"})
	if err != nil || p.Mode != Routed || !strings.Contains(p.Notice, "ipvtap needs CAP_SYS_ADMIN") {
		t.Errorf("auto: %s, %q, %v", p.Mode, p.Notice, err)
	}
	_, err = Decide(f, Request{Name: "vm1", Mode: IPVtap})
	if !errors.Is(err, ErrNoPrivilege) || !strings.Contains(err.Error(), "run vmrun as root, or use --net routed") {
		t.Errorf("--net ipvtap: %v", err)
	}
	f.Caps.NetRaw = false
	p, err = Decide(f, Request{Name: "vm1"})
	if err != nil || p.Mode != User || !strings.Contains(p.Notice, "vmrun lacks CAP_NET_RAW") || !strings.Contains(p.Notice, "`vmrun setup` once (it grants CAP_NET_ADMIN, CAP_NET_RAW and CAP_MKNOD)") {
		t.Errorf("auto without CAP_NET_RAW: %s, %q, %v", p.Mode, p.Notice, err)
	}
	_, err = Decide(f, Request{Name: "vm1", Mode: Routed})
	if !errors.Is(err, ErrNoPrivilege) || !strings.Contains(err.Error(), "--net routed needs CAP_NET_RAW") {
		t.Errorf("--net routed without CAP_NET_RAW: %v", err)
	}
}
