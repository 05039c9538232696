package chardev

import (
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/testutil"
)

// TestUeventTapDevNum makes a macvtap in a namespace of its own, with a
// uevent socket opened there first, and reads its character device's
// number from the queued uevents: the same as sysfs says (TapDevNum), and
// nothing for a link that has no character device.
func TestUeventTapDevNum(t *testing.T) {
	testutil.RequireRoot(t)
	n := testutil.NewNetns(t, "uev")
	err := n.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		u, err := OpenUevents()
		if err != nil {
			t.Fatalf("uevent socket: %v", err)
		}
		defer u.Close()
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "d0"}, PeerName: "d1"}); err != nil {
			return err
		}
		d0, err := h.LinkByName("d0")
		if err != nil {
			return err
		}
		if _, ok := u.TapDevNum("macvtap", "d0", d0.Attrs().Index); ok {
			t.Error("a device number for a veth")
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.ParentIndex, la.Group = "mvt0", d0.Attrs().Index, 12345
		if err := h.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}}); err != nil {
			return err
		}
		l, err := h.LinkByName("mvt0")
		if err != nil {
			return err
		}
		got, ok := u.TapDevNum("macvtap", "mvt0", l.Attrs().Index)
		if !ok {
			t.Fatal("no uevent announced mvt0's character device")
		}
		want, from, err := TapDevNum("macvtap", "mvt0", l.Attrs().Index, 12345)
		if err != nil {
			return err
		}
		if got != want {
			t.Errorf("uevent: device %#x, %s: %#x", got, from, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
