package gc

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// TestUndoObjects: every kind Undo knows, idempotence, other namespaces.
func TestUndoObjects(t *testing.T) {
	testutil.RequireRoot(t)
	host, lan := testutil.NewNetns(t, "h"), testutil.NewNetns(t, "l")
	testutil.Veth(t, host, "up0", lan, "lan0")
	before := host.Links(t)
	t.Parallel()
	fwd := "net/ipv4/conf/up0/forwarding"
	old := strings.TrimSpace(host.MustRun(t, "cat", "/proc/sys/"+fwd))
	host.MustRun(t, "sh", "-c", "echo 1 > /proc/sys/"+fwd)
	host.MustRun(t, "ip", "link", "add", "vmrgone0", "link", "up0", "type", "macvtap")
	host.MustRun(t, "ip", "link", "set", "vmrgone0", "alias", "vmrun:undo")
	objs := []rundir.Object{
		hostnet.SysctlObject(fwd, old),
		hostnet.LinkObject("undo", "vmrgone0", "macvtap", nil),
		hostnet.LinkObject("undo", "vmrnever0", "macvtap", nil), // never created: fine
		hostnet.SysctlObject("net/ipv4/conf/nosuchif/forwarding", "0"),
		hostnet.ProcessObject(1, "/nonexistent/vmrun/dir"), // pid 1 never matches
	}
	for i := range 2 { // the second round finds everything undone already
		if err := host.Do(func() error { return Undo(objs) }); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if got := strings.TrimSpace(host.MustRun(t, "cat", "/proc/sys/"+fwd)); got != old {
		t.Errorf("forwarding %s, want %s restored", got, old)
	}
	if got := host.Links(t); !slices.Equal(got, before) {
		t.Errorf("links after Undo %v, want %v", got, before)
	}

	// An object in another namespace, named by path; a vanished namespace is fine.
	other := testutil.NewNetns(t, "o")
	other.MustRun(t, "ip", "link", "add", "vmrns0", "type", "veth", "peer", "name", "vmrns1")
	other.MustRun(t, "ip", "link", "set", "vmrns0", "alias", "vmrun:undo")
	o := hostnet.LinkObject("undo", "vmrns0", "veth", nil)
	o.Netns = other.Path
	gone := hostnet.LinkObject("undo", "x", "veth", nil)
	gone.Netns = "/run/netns/vmrun-no-such-namespace"
	if err := Undo([]rundir.Object{o, gone}); err != nil {
		t.Fatal(err)
	}
	if links := other.Links(t); slices.Contains(links, "vmrns0") {
		t.Errorf("vmrns0 survived: %v", links)
	}

	err := Undo([]rundir.Object{{Kind: "no-such-kind", Name: "vmrun-x"}})
	if !errors.Is(err, hostnet.ErrUnknownObject) {
		t.Errorf("unknown kind: %v", err)
	}
}

// TestUndoRoutesNeighboursAddresses: the routed/ipvtap kinds, including
// proxy entries, IPv6, and objects whose link is already gone.
func TestUndoRoutesNeighboursAddresses(t *testing.T) {
	ns := testutil.NewNetns(t, "r")
	ns.MustRun(t, "ip", "link", "add", "vmrr0", "type", "veth", "peer", "name", "vmrr1")
	ns.MustRun(t, "ip", "link", "set", "vmrr0", "up")
	ns.MustRun(t, "ip", "addr", "add", "169.254.0.1/32", "dev", "vmrr0")
	ns.MustRun(t, "ip", "route", "add", "10.9.0.7/32", "dev", "vmrr0")
	ns.MustRun(t, "ip", "-6", "route", "add", "fd00::7/128", "dev", "vmrr0")
	ns.MustRun(t, "ip", "neigh", "add", "proxy", "10.9.0.7", "dev", "vmrr1")
	ns.MustRun(t, "ip", "neigh", "add", "10.9.0.8", "lladdr", "52:54:00:00:00:08", "dev", "vmrr0", "nud", "permanent")
	mustCIDR := func(s string) *net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	objs := []rundir.Object{
		hostnet.AddrObject(mustCIDR("169.254.0.1/32"), "vmrr0"),
		hostnet.RouteObject(mustCIDR("10.9.0.7/32"), "vmrr0"),
		hostnet.RouteObject(mustCIDR("fd00::7/128"), "vmrr0"),
		hostnet.NeighObject(net.ParseIP("10.9.0.7"), "vmrr1", true),
		hostnet.NeighObject(net.ParseIP("10.9.0.8"), "vmrr0", false),
		hostnet.RouteObject(mustCIDR("10.9.9.9/32"), "vmrgone"), // link gone: nothing to do
	}
	for i := range 2 {
		if err := ns.Do(func() error { return Undo(objs) }); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	for _, c := range [][]string{
		{"ip", "-4", "addr", "show", "dev", "vmrr0"},
		{"ip", "route", "show", "dev", "vmrr0"},
		{"ip", "-6", "route", "show", "fd00::7/128"},
		{"ip", "neigh", "show", "proxy"},
		{"ip", "neigh", "show", "10.9.0.8"},
	} {
		out := ns.MustRun(t, c[0], c[1:]...)
		for _, bad := range []string{"169.254.0.1", "10.9.0.7", "fd00::7", "10.9.0.8"} {
			if strings.Contains(out, bad) {
				t.Errorf("%v still shows %s:\n%s", c, bad, out)
			}
		}
	}
}
