package tap

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// recorder keeps the records of a set-up, as the VM's state file does.
type recorder struct{ dir *rundir.Dir }

func (r recorder) Record(o rundir.Object) error { return r.dir.Record(o) }
func (r recorder) Forget(o rundir.Object) error { return r.dir.Forget(o) }

// TestMacvtapHostLink: a macvtap guest on a veth gets a host link — a
// macvlan in bridge mode on the same parent, with vmrun's alias, up — and,
// once the LAN's DHCP server acks it an address, a recorded /32 route to
// it through the host link from the host's address on the parent. Undo
// removes both and forgets their records.
func TestMacvtapHostLink(t *testing.T) {
	ns := testutil.NewNetns(t, "hl")
	ns.MustRun(t, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "lan0")
	ns.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
	ns.MustRun(t, "ip", "link", "set", "up0", "up")
	ns.MustRun(t, "ip", "link", "set", "lan0", "up")
	dir := vmDir(t, "hl")
	ctx, got := addrTrace()
	m := Macvtap{Link: hostnet.LinkConfig{VM: "hl", LinkName: "vmrhlm", Parent: "up0", MAC: watchGuestMAC, Queues: 1}, HostLink: "vmrhls"}
	att, lan := attachWithLAN(t, ns, func() (*hostnet.Attachment, error) { return m.Attach(ctx, recorder{dir}) }, "lan0")
	var ml *netlink.Macvlan
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName("vmrhls")
		if err != nil {
			return err
		}
		ml, _ = l.(*netlink.Macvlan)
		return nil
	}); err != nil || ml == nil || ml.Mode != netlink.MACVLAN_MODE_BRIDGE || ml.Alias != hostnet.OwnerAlias("hl") || ml.OperState == netlink.OperDown {
		t.Fatalf("host link: %+v, %v; want a macvlan in bridge mode with vmrun's alias, up", ml, err)
	}
	// The ACK reaches the macvtap from the LAN (it is broadcast).
	guest := netip.MustParseAddr("10.77.0.57")
	broadcastACK(t, lan, guest)
	if a := awaitAddr(t, got); a.Addr != guest {
		t.Fatalf("watcher reported %+v, want %s", a, guest)
	}
	// The route is made (and recorded) before the address is reported.
	if !hasObject(dir, hostnet.ObjRoute, "10.77.0.57/32") {
		t.Errorf("the route to the guest is not recorded: %+v", dir.State().Objects)
	}
	if r := ns.MustRun(t, "ip", "route", "get", "10.77.0.57"); !strings.Contains(r, "dev vmrhls") || !strings.Contains(r, "src 10.77.0.2") {
		t.Errorf("route to the guest: %s; want it through the host link from 10.77.0.2", r)
	}
	undoLeavesNothing(t, ns, att, dir, "vmrhl")
}

// hasObject reports whether dir holds a record of kind and name.
func hasObject(dir *rundir.Dir, kind, name string) bool {
	for _, o := range dir.State().Objects {
		if o.Kind == kind && o.Name == name {
			return true
		}
	}
	return false
}
