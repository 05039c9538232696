package netsetup_test

import (
	"context"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/netsetup"
)

// TestNetworkKey: the key of the network behind the uplink is its
// gateway's MAC: none while the host has not resolved it, the LAN side's
// MAC once ResolveNetworkKey made the kernel resolve it, and then the same
// from the neighbour table alone.
func TestNetworkKey(t *testing.T) {
	l := newLab(t)
	l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
	l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
	f := detectIn(t, l.host, netsetup.Request{})
	want := "gateway " + strings.TrimSpace(l.lan.MustRun(t, "cat", "/sys/class/net/lan0/address"))
	var before, resolved, after string
	if err := l.host.Do(func() error {
		before = netsetup.NetworkKey(f)
		resolved = netsetup.ResolveNetworkKey(context.Background(), f)
		after = netsetup.NetworkKey(f)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if before != "" || resolved != want || after != want {
		t.Fatalf("keys before, resolved, after = %q, %q, %q; want \"\", %q, %q", before, resolved, after, want, want)
	}
	if k := netsetup.NetworkKey(netsetup.Facts{Uplink: "up0"}); k != "" {
		t.Fatalf("key without a default route = %q", k)
	}
}
