package ipvtap

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// TestCheckIPVtap: a re-read ipvtap passes only as asked — an ipvtap, L2
// with the bridge flag, the parent's MAC, a queue, vmrun's alias.
func TestCheckIPVtap(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	good := func() *netlink.IPVtap {
		la := netlink.LinkAttrs{Name: "ivt0", HardwareAddr: mac, TxQLen: 1000, Alias: hostnet.OwnerAlias("vm")}
		return &netlink.IPVtap{IPVlan: netlink.IPVlan{LinkAttrs: la, Mode: netlink.IPVLAN_MODE_L2, Flag: netlink.IPVLAN_FLAG_BRIDGE}}
	}
	for _, tt := range []struct {
		name string
		link func() netlink.Link
		ok   bool
	}{
		{"as asked", func() netlink.Link { return good() }, true},
		{"not an ipvtap", func() netlink.Link { return &netlink.Device{LinkAttrs: good().LinkAttrs} }, false},
		{"L3 mode", func() netlink.Link { l := good(); l.Mode = netlink.IPVLAN_MODE_L3; return l }, false},
		{"private flag", func() netlink.Link { l := good(); l.Flag = netlink.IPVLAN_FLAG_PRIVATE; return l }, false},
		{"another MAC", func() netlink.Link { l := good(); l.HardwareAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}; return l }, false},
		{"no queue", func() netlink.Link { l := good(); l.TxQLen = 0; return l }, false},
		{"another alias", func() netlink.Link { l := good(); l.Alias = hostnet.OwnerAlias("other"); return l }, false},
	} {
		err := checkIPVtap(tt.link(), mac, hostnet.OwnerAlias("vm"))
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, hostnet.ErrVerify)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestHostAddr: a registered guest address is a host address, and IPv6
// skips duplicate address detection (the guest does its own).
func TestHostAddr(t *testing.T) {
	for _, tt := range []struct {
		addr  string
		ones  int
		flags int
	}{
		{"192.168.1.57", 32, 0},
		{"2001:db8::57", 128, unix.IFA_F_NODAD},
	} {
		ad := hostAddr(netip.MustParseAddr(tt.addr))
		ones, _ := ad.Mask.Size()
		if ad.IP.String() != tt.addr || ones != tt.ones || ad.Flags != tt.flags {
			t.Errorf("%s: %s flags %#x, want /%d flags %#x", tt.addr, ad.IPNet, ad.Flags, tt.ones, tt.flags)
		}
	}
}
