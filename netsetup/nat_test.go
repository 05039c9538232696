package netsetup

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestChooseSubnet(t *testing.T) {
	cands := NATCandidates()
	if len(cands) != 54+16 || cands[0] != netip.MustParsePrefix("10.201.0.0/24") || cands[len(cands)-1] != netip.MustParsePrefix("172.31.201.0/24") {
		t.Fatalf("candidates: %d, first %s, last %s", len(cands), cands[0], cands[len(cands)-1])
	}
	tests := []struct {
		name string
		used []netip.Prefix
		want string
	}{
		{"empty host", nil, "10.201.0.0/24"},
		{"default routes are ignored", prefixes("0.0.0.0/0"), "10.201.0.0/24"},
		{"taken by an address", prefixes("10.201.0.5/32"), "10.202.0.0/24"},
		{"taken by a wider route", prefixes("10.200.0.0/15"), "10.202.0.0/24"},
		{"taken by a narrower route", prefixes("10.201.0.128/25", "10.202.0.0/24"), "10.203.0.0/24"},
		{"all of 10/8 routed", prefixes("10.0.0.0/8"), "172.16.201.0/24"},
		{"the usual suspects do not matter", prefixes("192.168.1.0/24", "172.17.0.0/16", "10.88.0.0/16", "127.0.0.0/8", "192.0.2.0/24"), "10.201.0.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseSubnet(cands, tt.used)
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
	if _, err := ChooseSubnet(cands, prefixes("10.0.0.0/8", "172.16.0.0/12")); !errors.Is(err, ErrNoSubnet) || !strings.Contains(err.Error(), "--nat-subnet") {
		t.Errorf("all taken: %v", err)
	}
}

func TestParseNATSubnet(t *testing.T) {
	for in, want := range map[string]string{"10.5.0.0/16": "10.5.0.0/16", "192.168.77.0/24": "192.168.77.0/24", "10.9.9.8/29": "10.9.9.8/29"} {
		if p, err := ParseNATSubnet(in); err != nil || p.String() != want {
			t.Errorf("%s: %s, %v", in, p, err)
		}
	}
	for in, msg := range map[string]string{
		"10.5.0.1/16":  "network address, 10.5.0.0/16",
		"fd00::/64":    "IPv4",
		"10.0.0.0/30":  "/8 to /29",
		"10.0.0.0/7":   "/8 to /29",
		"10.0.0.0":     "not a CIDR",
		"eth0":         "not a CIDR",
		"10.300.0.0/8": "not a CIDR",
	} {
		if _, err := ParseNATSubnet(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want %q", in, err, msg)
		}
	}
	if err := checkSubnet(netip.MustParsePrefix("10.77.0.0/16"), prefixes("10.77.0.0/24")); err == nil || !strings.Contains(err.Error(), "overlaps 10.77.0.0/24") {
		t.Errorf("overlap: %v", err)
	}
	if err := checkSubnet(netip.MustParsePrefix("10.78.0.0/16"), prefixes("10.77.0.0/24", "0.0.0.0/0")); err != nil {
		t.Errorf("no overlap: %v", err)
	}
}

func TestAllocateIP(t *testing.T) {
	subnet := netip.MustParsePrefix("10.201.0.0/24")
	none := func(netip.Addr) bool { return false }
	a, err := AllocateIP(subnet, "web", none)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := AllocateIP(subnet, "web", none); a != b {
		t.Errorf("not deterministic: %s, %s", a, b)
	}
	if !subnet.Contains(a) || a == NATGateway(subnet) || a == subnet.Addr() || a.As4()[3] == 255 {
		t.Errorf("address %s is not a guest address of %s", a, subnet)
	}
	// A collision moves on to the next free address.
	b, err := AllocateIP(subnet, "web", func(x netip.Addr) bool { return x == a })
	if err != nil || b == a || b != a.Next() && a.As4()[3] != 254 {
		t.Errorf("collision: %s, %v (first %s)", b, err, a)
	}
	// Different names spread out.
	seen := map[netip.Addr]bool{}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		x, _ := AllocateIP(subnet, n, none)
		seen[x] = true
	}
	if len(seen) < 6 {
		t.Errorf("8 names got only %d distinct addresses", len(seen))
	}
	// A /29 has 5 guest addresses (.2 to .6): all of them, then full.
	small := netip.MustParsePrefix("10.9.9.8/29")
	taken := map[netip.Addr]bool{}
	for i := range 5 {
		x, err := AllocateIP(small, "vm", func(x netip.Addr) bool { return taken[x] })
		if err != nil {
			t.Fatalf("address %d: %v", i, err)
		}
		if x.As4()[3] < 10 || x.As4()[3] > 14 || taken[x] {
			t.Fatalf("address %d: %s", i, x)
		}
		taken[x] = true
	}
	if _, err := AllocateIP(small, "vm", func(x netip.Addr) bool { return taken[x] }); !errors.Is(err, ErrSubnetFull) {
		t.Errorf("full subnet: %v", err)
	}
	if g := NATGateway(small); g.String() != "10.9.9.9" {
		t.Errorf("gateway %s", g)
	}
}

func TestDecideNAT(t *testing.T) {
	fws := []Forward{{Proto: "tcp", HostPort: 8080, GuestPort: 80}}
	p, err := Decide(ethFacts(), Request{Mode: NAT, Name: "vm1", Forwards: fws, NAT: NATOptions{Subnet: "10.5.0.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != NAT || p.Parent != NATBridge || p.LinkName != LinkName("vm1", RoleTap) || p.Queues != 4 || !p.Vhost ||
		!reflect.DeepEqual(p.Forwards, fws) || p.NAT == nil || p.NAT.Subnet != "10.5.0.0/24" || p.Notice != "" {
		t.Errorf("plan %+v", p)
	}
	if !strings.Contains(p.Reason, "private bridge vmrnat0") {
		t.Errorf("reason %q", p.Reason)
	}
	a := Preview(p)
	if a.Backend != "tap" || len(a.Files) != 4 {
		t.Errorf("preview %+v", a)
	}
	if p, err := Decide(noRouteFacts(), Request{Mode: NAT, Name: "vm1"}); err != nil || !strings.Contains(p.Notice, "no default route") {
		t.Errorf("no route: %+v, %v", p, err)
	}
	for name, tt := range map[string]struct {
		facts Facts
		req   Request
		is    error
		has   string
	}{
		"unprivileged": {with(ethFacts(), func(f *Facts) { f.Caps.NetAdmin = false }), Request{Mode: NAT}, ErrNoPrivilege, "CAP_NET_ADMIN"},
		"no tun":       {with(ethFacts(), func(f *Facts) { f.Caps.Tun = false }), Request{Mode: NAT}, ErrNoKernelSupport, "/dev/net/tun"},
		"IPv6 forward": {ethFacts(), Request{Mode: NAT, Forwards: []Forward{{Proto: "tcp", HostAddr: "::1", HostPort: 1, GuestPort: 2}}}, ErrBadRequest, "IPv4 only"},
		"same port twice": {ethFacts(), Request{Mode: NAT, Forwards: []Forward{{Proto: "tcp", HostPort: 1, GuestPort: 2}, {Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 1, GuestPort: 3}}},
			ErrBadRequest, "forwarded twice"},
	} {
		t.Run(name, func(t *testing.T) {
			r := tt.req
			r.Name = "vm1"
			if _, err := Decide(tt.facts, r); !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.has) {
				t.Errorf("got %v, want %v containing %q", err, tt.is, tt.has)
			}
		})
	}
}

func TestUserBackend(t *testing.T) {
	fws := []Forward{{Proto: "tcp", HostAddr: "::1", HostPort: 8080, GuestPort: 80}}
	p, err := Decide(ethFacts(), Request{Mode: User, Name: "vm1", Forwards: fws})
	if err != nil {
		t.Fatal(err)
	}
	if p.Passt != "/usr/bin/passt" || p.Notice != "" {
		t.Errorf("with passt and a route: passt %q, notice %q", p.Passt, p.Notice)
	}
	if a := Preview(p); a.Backend != "stream" || len(a.Files) != 1 || len(a.Options) != 0 {
		t.Errorf("passt preview %+v", a)
	}
	noPasst := with(ethFacts(), func(f *Facts) { f.Caps.Passt = "" })
	p, _ = Decide(noPasst, Request{Mode: User, Name: "vm1"})
	if p.Passt != "" || !strings.Contains(p.Notice, "passt is not installed") || strings.Contains(p.Notice, "\n") {
		t.Errorf("without passt: passt %q, notice %q", p.Passt, p.Notice)
	}
	// QEMU's slirp has IPv6 (on by default, fec0::/64 behind its NAT).
	if strings.Contains(p.Notice, "no IPv6") || !strings.Contains(p.Notice, "fec0::/64") {
		t.Errorf("without passt: the notice misstates slirp's IPv6: %q", p.Notice)
	}
	p, _ = Decide(noRouteFacts(), Request{Mode: User, Name: "vm1"})
	if p.Passt != "" || !strings.Contains(p.Notice, "passt needs a default route") {
		t.Errorf("without a route: passt %q, notice %q", p.Passt, p.Notice)
	}
	// Auto's user fallback makes the same choice, and says both things.
	f := with(wifiFacts(WifiMonitor, false), func(f *Facts) { f.Caps.Passt = "" })
	p, _ = Decide(f, Request{Name: "vm1"})
	if p.Mode != User || !strings.Contains(p.Notice, "monitor mode") || !strings.Contains(p.Notice, "passt is not installed") {
		t.Errorf("auto fallback: %s, %q", p.Mode, p.Notice)
	}
	p, _ = Decide(wifiFacts(WifiMonitor, false), Request{Name: "vm1"})
	if p.Mode != User || p.Passt == "" {
		t.Errorf("auto fallback with passt: %s, %q", p.Mode, p.Passt)
	}
}
