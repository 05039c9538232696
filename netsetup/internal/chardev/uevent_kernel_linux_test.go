package chardev

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestUeventTapDevNum makes a macvtap in a namespace of its own, with a
// uevent socket opened there first, and reads its character device's
// number from the queued uevents: the same as sysfs says (TapDevNum), and
// nothing for a link that has no character device; then opens it
// (checkOpenCharDev).
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
		checkOpenCharDev(t, want, "tap"+strconv.Itoa(l.Attrs().Index))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkOpenCharDev opens device dev (a macvtap's, named name in /dev)
// twice: through /dev/NAME when that node is the device, else a private
// node; and through a private node when the name is another device's
// (/dev/null) or nobody's. Every file must be the device.
func checkOpenCharDev(t *testing.T, dev uint64, name string) {
	t.Helper()
	var st unix.Stat_t
	err := unix.Lstat("/dev/"+name, &st)
	inDev := err == nil && st.Rdev == dev
	// devtmpfs makes the node with the device: on such a /dev the first
	// case must not pass through a private node for want of one.
	if errors.Is(err, unix.ENOENT) && devIsDevtmpfs(t) {
		t.Errorf("/dev is devtmpfs, but has no node /dev/%s for the macvtap", name)
	}
	for _, c := range []struct{ name, want string }{
		{name, map[bool]string{true: "/dev/" + name, false: "a private node"}[inDev]},
		{"null", "a private node"},
		{"vmrun-no-such-node", "a private node"},
	} {
		files, from, err := OpenCharDev(dev, c.name, 2)
		if err != nil {
			t.Errorf("OpenCharDev(%s): %v", c.name, err)
			continue
		}
		if from != c.want || len(files) != 2 {
			t.Errorf("OpenCharDev(%s): %d files through %s, want 2 through %s", c.name, len(files), from, c.want)
		}
		for _, f := range files {
			if fi, err := f.Stat(); err != nil || !isDev(fi, dev) {
				t.Errorf("OpenCharDev(%s) through %s: not device %#x (%v)", c.name, from, dev, err)
			}
			// Readers of the queues (the DHCP probe, fake guests) rely on
			// deadlines: the file must be in Go's poller.
			if err := f.SetReadDeadline(time.Now()); err != nil {
				t.Errorf("OpenCharDev(%s) through %s: a read deadline: %v", c.name, from, err)
			}
		}
		closeAll(files)
	}
	t.Logf("/dev/%s is the device: %v", name, inDev)
}

// devIsDevtmpfs reports whether /dev is a devtmpfs mount here (the last
// mount on /dev is the one seen).
func devIsDevtmpfs(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	is := false
	for _, l := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
		if f := strings.Fields(l); len(f) > 4 && f[4] == "/dev" {
			_, after, _ := strings.Cut(l, " - ")
			is = strings.HasPrefix(after, "devtmpfs ")
		}
	}
	return is
}
