package e2e

import (
	"syscall"
	"testing"
)

// TestFollowUplinkReports: a --net auto VM (macvtap on the LAN's veth)
// follows its uplink: when the default route goes, vmrun says on stderr
// that the guest would park in user mode, and when it returns, that it
// would switch back (the guest itself stays on its macvtap for now).
func TestFollowUplinkReports(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	vm := Start(t, l.Host, "", "--disk", g.Test, "--snapshot", "--name", "e2e-follow", "--console", "none", "-v")
	if _, err := vm.Stderr.WaitFor(`following the uplink \(up0\)`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	l.Host.MustRun(t, "ip", "route", "del", "default")
	if _, err := vm.Stderr.WaitFor(`uplink: park +macvtap on up0 → user: there is no default route any more \(it left through up0\)`, stepTimeout); err != nil {
		t.Fatal(err)
	}
	l.Host.MustRun(t, "ip", "route", "add", "default", "via", "10.77.0.1")
	if _, err := vm.Stderr.WaitFor(`uplink: switch +user → macvtap on up0: an uplink is back \(up0, ethernet\)`, stepTimeout); err != nil {
		t.Fatal(err)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}
