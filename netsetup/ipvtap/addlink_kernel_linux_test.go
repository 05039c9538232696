package ipvtap

import (
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// TestAddLinkIndex, with a macvlan standing in for the ipvtap (this
// machine's kernel may lack ipvtap; the rig's tests make real ones): the
// link is made in the private namespace at the index asked for, and the
// link returned is it; when that index is taken (1, the loopback's, in
// both namespaces), the kernel picks one and the link returned is the one
// made, looked up.
func TestAddLinkIndex(t *testing.T) {
	home := testutil.NewNetns(t, "alh")
	private := testutil.NewNetns(t, "alp")
	testutil.Veth(t, home, "up0", home, "up1")
	macvlan := func(la netlink.LinkAttrs) netlink.Link {
		return &netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}
	}
	for _, tt := range []struct {
		name            string
		ivIndex, hostMx int
		want            int // 0: the kernel's choice
	}{
		{"free", 2, 40, 41},
		{"private above", 60, 40, 60},
		{"taken", 1, 0, 0},
	} {
		var got, seen netlink.Link
		err := home.Do(func() error {
			h, err := hostnet.NewHandle()
			if err != nil {
				return err
			}
			defer h.Close()
			parent, err := h.LinkByName("up0")
			if err != nil {
				return err
			}
			nh, err := netlink.NewHandleAt(private.Handle(t))
			if err != nil {
				return err
			}
			defer nh.Close()
			x := &guest{ns: private.Handle(t), nh: nh, parentIx: parent.Attrs().Index, ivIndex: tt.ivIndex, hostMax: tt.hostMx}
			name := "al-" + tt.name[:4]
			if got, err = x.addLink(h, name, 7, macvlan); err != nil {
				return err
			}
			if seen, err = nh.LinkByName(name); err != nil {
				return fmt.Errorf("not in the private namespace: %w", err)
			}
			return nh.LinkDel(seen)
		})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		a, s := got.Attrs(), seen.Attrs()
		if a.Index != s.Index || a.Name != s.Name || a.Namespace != nil || (tt.want != 0 && s.Index != tt.want) || (tt.want == 0 && s.Index == 1) {
			t.Errorf("%s: returned %s at %d (namespace %v), made %s at %d, want index %d", tt.name, a.Name, a.Index, a.Namespace, s.Name, s.Index, tt.want)
		}
		if s.Group != 7 {
			t.Errorf("%s: group %d, not the nonce", tt.name, s.Group)
		}
	}
}
