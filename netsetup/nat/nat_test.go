package nat

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestChooseSubnet(t *testing.T) {
	cands := candidates()
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
			got, err := chooseSubnet(cands, tt.used)
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
	if _, err := chooseSubnet(cands, prefixes("10.0.0.0/8", "172.16.0.0/12")); !errors.Is(err, hostnet.ErrNoSubnet) || !strings.Contains(err.Error(), "--nat-subnet") {
		t.Errorf("all taken: %v", err)
	}
}

func TestParseSubnet(t *testing.T) {
	for in, want := range map[string]string{"10.5.0.0/16": "10.5.0.0/16", "192.168.77.0/24": "192.168.77.0/24", "10.9.9.8/29": "10.9.9.8/29"} {
		if p, err := ParseSubnet(in); err != nil || p.String() != want {
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
		if _, err := ParseSubnet(in); err == nil || !strings.Contains(err.Error(), msg) {
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
	a, err := allocateIP(subnet, "web", none)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := allocateIP(subnet, "web", none); a != b {
		t.Errorf("not deterministic: %s, %s", a, b)
	}
	if !subnet.Contains(a) || a == gateway(subnet) || a == subnet.Addr() || a.As4()[3] == 255 {
		t.Errorf("address %s is not a guest address of %s", a, subnet)
	}
	// A collision moves on to the next free address.
	b, err := allocateIP(subnet, "web", func(x netip.Addr) bool { return x == a })
	if err != nil || b == a || b != a.Next() && a.As4()[3] != 254 {
		t.Errorf("collision: %s, %v (first %s)", b, err, a)
	}
	// Different names spread out.
	seen := map[netip.Addr]bool{}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		x, _ := allocateIP(subnet, n, none)
		seen[x] = true
	}
	if len(seen) < 6 {
		t.Errorf("8 names got only %d distinct addresses", len(seen))
	}
	// A /29 has 5 guest addresses (.2 to .6): all of them, then full.
	small := netip.MustParsePrefix("10.9.9.8/29")
	taken := map[netip.Addr]bool{}
	for i := range 5 {
		x, err := allocateIP(small, "vm", func(x netip.Addr) bool { return taken[x] })
		if err != nil {
			t.Fatalf("address %d: %v", i, err)
		}
		if x.As4()[3] < 10 || x.As4()[3] > 14 || taken[x] {
			t.Fatalf("address %d: %s", i, x)
		}
		taken[x] = true
	}
	if _, err := allocateIP(small, "vm", func(x netip.Addr) bool { return taken[x] }); !errors.Is(err, hostnet.ErrSubnetFull) {
		t.Errorf("full subnet: %v", err)
	}
	if g := gateway(small); g.String() != "10.9.9.9" {
		t.Errorf("gateway %s", g)
	}
}
