package netsetup

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// privilegeSets are every subset of the capabilities vmrun's set-ups use:
// bit i of the index is allPrivileges[i].
var allPrivileges = []Privilege{PrivNetAdmin, PrivNetRaw, PrivMknod, PrivSysAdmin}

func privilegeSet(bits int) (Caps, []Privilege) {
	var c Caps
	var ps []Privilege
	for i, p := range allPrivileges {
		if bits&(1<<i) == 0 {
			continue
		}
		ps = append(ps, p)
		switch p {
		case PrivNetAdmin:
			c.NetAdmin = true
		case PrivNetRaw:
			c.NetRaw = true
		case PrivMknod:
			c.Mknod = true
		case PrivSysAdmin:
			c.SysAdmin = true
		}
	}
	return c, ps
}

// uplinkKinds are the uplinks Decide tells apart, each with a kernel that
// has every feature (tun, macvtap, ipvtap) unless the name says otherwise.
func uplinkKinds() map[string]Facts {
	other := with(ethFacts(), func(f *Facts) { f.Uplink, f.Kind, f.LinkType = "wg0", UplinkOther, "wireguard" })
	return map[string]Facts{
		"bridge":                   bridgeFacts(),
		"bridge port":              portFacts(),
		"ethernet":                 with(ethFacts(), func(f *Facts) { f.Addrs = []string{"192.168.1.10/24"} }),
		"wifi station":             with(wifiFacts(WifiStation, false), func(f *Facts) { f.Addrs = []string{"192.168.1.10/24"} }),
		"wifi station, no ipvlan":  with(wifiFacts(WifiStation, false), func(f *Facts) { f.Caps.IPVtap = false; f.Addrs = []string{"192.168.1.10/24"} }),
		"wifi ad-hoc":              wifiFacts(WifiAdHoc, false),
		"wifi station, 4-address":  wifiFacts(WifiStation, true),
		"wifi access point":        wifiFacts(WifiAP, false),
		"wifi mesh point":          wifiFacts(WifiMesh, false),
		"wifi monitor":             wifiFacts(WifiMonitor, false),
		"not ethernet (wireguard)": other,
		"no default route":         noRouteFacts(),
	}
}

// TestPlanPrivileges decides for every (uplink kind × privilege set) pair,
// with --net auto and with every mode forced, and checks that Decide never
// returns a mode whose set-up needs a capability the process lacks; auto
// falls back (routed for ipvtap, else user mode naming what `vmrun setup`
// would give), a forced mode is refused with ErrNoPrivilege.
func TestPlanPrivileges(t *testing.T) {
	modes := []Mode{Auto, Bridge, Macvtap, IPVtap, Routed, NAT, User, None}
	for kind, base := range uplinkKinds() {
		for bits := 0; bits < 1<<len(allPrivileges); bits++ {
			priv, ps := privilegeSet(bits)
			f := base
			f.Caps.NetAdmin, f.Caps.NetRaw, f.Caps.Mknod, f.Caps.SysAdmin = priv.NetAdmin, priv.NetRaw, priv.Mknod, priv.SysAdmin
			for _, m := range modes {
				name := fmt.Sprintf("%s/%v/%s", kind, ps, m)
				p, err := Decide(f, Request{Name: "vm1", Mode: m})
				if err != nil {
					if errors.Is(err, ErrNoPrivilege) {
						for _, miss := range missingPrivs(f.Caps, m) {
							if !strings.Contains(err.Error(), string(miss)) {
								t.Errorf("%s: refused without naming %s: %v", name, miss, err)
							}
						}
					}
					continue
				}
				if miss := missingPrivs(f.Caps, p.Mode); len(miss) > 0 {
					t.Errorf("%s: chose %s, whose set-up needs %v, which the process lacks", name, p.Mode, miss)
				}
				if m != Auto && m != p.Mode {
					t.Errorf("%s: forced mode gave %s", name, p.Mode)
				}
				if m == Auto {
					checkAutoFallback(t, name, f, p)
				}
			}
		}
	}
}

// checkAutoFallback: when auto settles for user mode on an uplink where a
// privileged vmrun would do better, the notice names the missing
// capabilities and, when `vmrun setup` grants them, says so.
func checkAutoFallback(t *testing.T, name string, f Facts, p Plan) {
	t.Helper()
	if p.Mode != User {
		return
	}
	root := f
	root.Caps.NetAdmin, root.Caps.NetRaw, root.Caps.Mknod, root.Caps.SysAdmin = true, true, true, true
	best, err := Decide(root, Request{Name: "vm1"})
	if err != nil || best.Mode == User {
		return // user mode is the best there is here
	}
	if !strings.Contains(p.Notice, "vmrun lacks") || !strings.Contains(p.Notice, "CAP_") {
		t.Errorf("%s: user mode (root would get %s) without naming the missing capability: %q", name, best.Mode, p.Notice)
	}
	if len(missingPrivs(f.Caps, Routed)) > 0 && grantedBySetup(Needs(best.Mode)) && !strings.Contains(p.Notice, "`vmrun setup` once (it grants CAP_NET_ADMIN, CAP_NET_RAW and CAP_MKNOD)") {
		t.Errorf("%s: user mode without saying what `vmrun setup` would give: %q", name, p.Notice)
	}
}

// TestPlanWithSetupGrants pins what a member of group vmrun gets from
// --net auto with exactly what `vmrun setup` grants, and what root gets.
func TestPlanWithSetupGrants(t *testing.T) {
	setup := Caps{NetAdmin: true, NetRaw: true, Mknod: true}
	root := Caps{NetAdmin: true, NetRaw: true, Mknod: true, SysAdmin: true}
	tests := []struct {
		kind             string
		member, rootMode Mode
	}{
		{"bridge", Bridge, Bridge},
		{"bridge port", Bridge, Bridge},
		{"ethernet", Macvtap, Macvtap},
		{"wifi station", Routed, IPVtap},
		{"wifi station, no ipvlan", Routed, Routed},
		{"wifi ad-hoc", Routed, IPVtap},
		{"wifi station, 4-address", Macvtap, Macvtap},
		{"wifi access point", Macvtap, Macvtap},
		{"not ethernet (wireguard)", User, NAT},
		{"no default route", User, User},
	}
	kinds := uplinkKinds()
	for _, tt := range tests {
		for _, who := range []struct {
			caps Caps
			want Mode
		}{{setup, tt.member}, {root, tt.rootMode}} {
			f := kinds[tt.kind]
			f.Caps.NetAdmin, f.Caps.NetRaw, f.Caps.Mknod, f.Caps.SysAdmin = who.caps.NetAdmin, who.caps.NetRaw, who.caps.Mknod, who.caps.SysAdmin
			p, err := Decide(f, Request{Name: "vm1"})
			if err != nil || p.Mode != who.want {
				t.Errorf("%s with %+v: %s (%q), %v; want %s", tt.kind, who.caps, p.Mode, p.Notice, err, who.want)
			}
		}
	}
	if !grantedBySetup(Needs(Routed)) || !grantedBySetup(Needs(Macvtap)) || !grantedBySetup(Needs(Bridge)) || grantedBySetup(Needs(IPVtap)) {
		t.Errorf("vmrun setup's grants %v: bridge, macvtap and routed must need no more, ipvtap needs CAP_SYS_ADMIN", SetupGrants())
	}
}
