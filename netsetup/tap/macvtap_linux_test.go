package tap

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// TestCheckMacvtap compares re-read links with what was asked: each
// difference the kernel could make is a verification error naming it.
func TestCheckMacvtap(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	good := func() *netlink.Macvtap {
		la := netlink.NewLinkAttrs()
		la.HardwareAddr, la.Alias, la.ParentIndex, la.TxQLen = mac, "vmrun:vm", 7, 500
		return &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}}
	}
	cases := map[string]struct {
		link netlink.Link
		want string // "" for no error
	}{
		"as asked":    {good(), ""},
		"not macvtap": {&netlink.Dummy{LinkAttrs: good().LinkAttrs}, "not a macvtap"},
		"mode":        {func() netlink.Link { l := good(); l.Mode = netlink.MACVLAN_MODE_VEPA; return l }(), "not bridge"},
		"mac":         {func() netlink.Link { l := good(); l.HardwareAddr = net.HardwareAddr{2, 0, 0, 0, 0, 1}; return l }(), "MAC"},
		"no queue":    {func() netlink.Link { l := good(); l.TxQLen = 0; return l }(), "queue length 0"},
		"alias":       {func() netlink.Link { l := good(); l.Alias = ""; return l }(), "alias"},
		"parent":      {func() netlink.Link { l := good(); l.ParentIndex = 8; return l }(), "parent #8"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := checkMacvtap(c.link, 7, mac, hostnet.OwnerAlias("vm"))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("checkMacvtap = %v, want nil", err)
			case c.want != "" && (!errors.Is(err, hostnet.ErrVerify) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("checkMacvtap = %v, want ErrVerify naming %q", err, c.want)
			}
		})
	}
}
