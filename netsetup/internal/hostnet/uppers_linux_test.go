package hostnet

import (
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestUppersOf(t *testing.T) {
	la := func(index, parent, nsid int, name string) netlink.LinkAttrs {
		return netlink.LinkAttrs{Index: index, ParentIndex: parent, NetNsID: nsid, Name: name}
	}
	links := []netlink.Link{
		&netlink.Device{LinkAttrs: la(2, 0, -1, "wlan0")},
		&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la(3, 2, -1, "mvt0")}},
		&netlink.IPVlan{LinkAttrs: la(4, 2, -1, "ipv0"), Mode: netlink.IPVLAN_MODE_L3, Flag: netlink.IPVLAN_FLAG_PRIVATE},
		&netlink.IPVtap{IPVlan: netlink.IPVlan{LinkAttrs: la(5, 2, -1, "ivt0"), Mode: netlink.IPVLAN_MODE_L2}},
		&netlink.Vlan{LinkAttrs: la(6, 2, -1, "wlan0.7")},   // not an upper that matters
		&netlink.Macvlan{LinkAttrs: la(7, 2, 0, "mvother")}, // its parent #2 is in another namespace
		&netlink.Macvlan{LinkAttrs: la(8, 9, -1, "mv9")},    // on another parent
		&netlink.IPVlan{LinkAttrs: la(10, 2, -1, "ipv3s"), Mode: netlink.IPVLAN_MODE_L3S, Flag: netlink.IPVLAN_FLAG_VEPA},
	}
	want := []UpperLink{
		{Name: "mvt0", Kind: "macvtap"},
		{Name: "ipv0", Kind: "ipvlan", IPVlanMode: "l3 private"},
		{Name: "ivt0", Kind: "ipvtap", IPVlanMode: "l2 bridge"},
		{Name: "ipv3s", Kind: "ipvlan", IPVlanMode: "l3s vepa"},
	}
	if got := UppersOf(links, 2); !reflect.DeepEqual(got, want) {
		t.Errorf("uppers\n got %+v\nwant %+v", got, want)
	}
	if got := UppersOf(links, 42); got != nil {
		t.Errorf("uppers of a link without any: %+v", got)
	}
}
