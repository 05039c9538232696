package netsetup_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// detectIn runs Detect inside namespace n.
func detectIn(t testing.TB, n *testutil.Netns, r netsetup.Request) netsetup.Facts {
	t.Helper()
	var f netsetup.Facts
	if err := n.Do(func() error {
		var err error
		f, err = netsetup.Detect(context.Background(), r)
		return err
	}); err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return f
}

func TestDetectKernel(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()

	t.Run("veth uplink", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
		l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
		f := detectIn(t, l.host, netsetup.Request{})
		if f.Uplink != "up0" || f.Kind != netsetup.UplinkEthernet || f.LinkType != "veth" || !f.Up || !f.Exists || f.Named {
			t.Errorf("facts %+v", f)
		}
		if f.Route == nil || f.Route.Family != "inet" || f.Route.Gateway != lanIP {
			t.Errorf("route %+v", f.Route)
		}
		if len(f.MAC) != 6 || f.MTU != 1500 || f.Index == 0 {
			t.Errorf("link details %+v", f)
		}
		checkCaps(t, f.Caps)
		p, err := netsetup.Decide(f, netsetup.Request{Name: "vm"})
		if err != nil || p.Mode != netsetup.Macvtap || p.Parent != "up0" {
			t.Errorf("plan %+v, %v", p, err)
		}
	})

	t.Run("bridge uplink", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		l.bridged(t)
		l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "br0")
		l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
		f := detectIn(t, l.host, netsetup.Request{})
		if f.Uplink != "br0" || f.Kind != netsetup.UplinkBridge || f.LinkType != "bridge" {
			t.Errorf("facts %+v", f)
		}
		port := detectIn(t, l.host, netsetup.Request{Uplink: "up0"})
		if port.Kind != netsetup.UplinkBridgePort || port.Master != "br0" || !port.MasterUp || !port.Named {
			t.Errorf("bridge port facts %+v", port)
		}
		p, err := netsetup.Decide(port, netsetup.Request{Name: "vm", Uplink: "up0"})
		if err != nil || p.Mode != netsetup.Bridge || p.Parent != "br0" {
			t.Errorf("plan on the port %+v, %v", p, err)
		}
	})

	t.Run("no default route", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		f := detectIn(t, l.host, netsetup.Request{})
		if f.Uplink != "" || f.Kind != netsetup.UplinkNone || f.Route != nil {
			t.Errorf("facts %+v", f)
		}
		p, err := netsetup.Decide(f, netsetup.Request{Name: "vm"})
		if err != nil || p.Mode != netsetup.User || p.Notice == "" {
			t.Errorf("plan %+v, %v", p, err)
		}
	})

	t.Run("ipv6-only default route", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		l.host.MustRun(t, "ip", "-6", "addr", "add", "2001:db8:77::2/64", "dev", "up0", "nodad")
		l.host.MustRun(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:77::1", "dev", "up0")
		f := detectIn(t, l.host, netsetup.Request{})
		if f.Uplink != "up0" || f.Kind != netsetup.UplinkEthernet || f.Route == nil || f.Route.Family != "inet6" || f.Route.Gateway != "2001:db8:77::1" {
			t.Errorf("facts %+v route %+v", f, f.Route)
		}
	})

	t.Run("policy routing", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		l.host.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
		l.host.MustRun(t, "ip", "link", "set", "br0", "up")
		l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
		l.host.MustRun(t, "ip", "addr", "add", "10.78.0.2/24", "dev", "br0")
		l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
		// A rule sends everything to table 100, whose default is via br0.
		l.host.MustRun(t, "ip", "route", "add", "default", "via", "10.78.0.1", "dev", "br0", "table", "100")
		l.host.MustRun(t, "ip", "rule", "add", "pref", "100", "lookup", "100")
		f := detectIn(t, l.host, netsetup.Request{})
		if f.Uplink != "br0" {
			t.Errorf("the lookup ignored policy routing: uplink %q", f.Uplink)
		}
	})

	t.Run("multipath", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		l.host.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
		l.host.MustRun(t, "ip", "link", "set", "br0", "up")
		l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
		l.host.MustRun(t, "ip", "addr", "add", "10.78.0.2/24", "dev", "br0")
		l.host.MustRun(t, "ip", "route", "add", "default", "nexthop", "via", lanIP, "dev", "up0", "nexthop", "via", "10.78.0.1", "dev", "br0")
		f := detectIn(t, l.host, netsetup.Request{})
		if f.Uplink != "up0" && f.Uplink != "br0" {
			t.Errorf("multipath uplink %q", f.Uplink)
		}
	})

	t.Run("named interface that does not exist", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		f := detectIn(t, l.host, netsetup.Request{Mode: netsetup.Bridge, Parent: "br9"})
		if f.Exists || !f.Named || f.Uplink != "br9" {
			t.Errorf("facts %+v", f)
		}
		_, err := netsetup.Decide(f, netsetup.Request{Name: "vm", Mode: netsetup.Bridge, Parent: "br9"})
		if err == nil || err.Error() != "bridge br9 does not exist; create it or choose another with --net bridge:NAME" {
			t.Errorf("error %v", err)
		}
	})
}

// checkCaps compares the probed capabilities with the kernel's, asked
// another way: the devices opened directly, links made by iproute2 in a
// throwaway namespace. On this machine (TESTING.md): tun and macvtap, no
// vhost-net, no ipvtap (test/wifi checks doctor, which probes the same way,
// in the nested rig, which has all four).
func checkCaps(t *testing.T, c netsetup.Caps) {
	t.Helper()
	if !c.NetAdmin {
		t.Errorf("caps %+v: root without CAP_NET_ADMIN", c)
	}
	opens := func(dev string) bool {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		return err == nil
	}
	ns := testutil.NewNetns(t, "caps")
	ns.MustRun(t, "ip", "link", "add", "cv0", "type", "veth", "peer", "name", "cv1")
	creates := func(args ...string) bool {
		_, err := ns.Run("ip", args...)
		return err == nil
	}
	for _, k := range []struct {
		what      string
		got, want bool
	}{
		{"tun", c.Tun, opens("/dev/net/tun")},
		{"vhost-net", c.VhostNet, opens("/dev/vhost-net")},
		{"macvtap", c.Macvtap, creates("link", "add", "cm0", "link", "cv0", "type", "macvtap", "mode", "bridge")},
		{"ipvtap", c.IPVtap, creates("link", "add", "ci0", "link", "cv1", "type", "ipvtap", "mode", "l2", "bridge")},
	} {
		if k.got != k.want {
			t.Errorf("%s: probed %v, the kernel says %v", k.what, k.got, k.want)
		}
	}
	if _, err := exec.LookPath("passt"); (err == nil) != (c.Passt != "") {
		t.Errorf("passt %q, LookPath error %v", c.Passt, err)
	}
	t.Logf("caps: %+v", c)
}
