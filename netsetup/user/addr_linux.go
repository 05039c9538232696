package user

import (
	"context"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// SlirpGuestAddr is the address QEMU's slirp gives the guest by DHCP.
var SlirpGuestAddr = netip.AddrFrom4([4]byte{10, 0, 2, 15})

// reportAddr tells ctx's Trace the guest's user-mode address: slirp's
// fixed one, or for passt the one it copies from the host (the first
// IPv4 address of the interface of the host's first IPv4 default route),
// when there is one. Either is the guest's address behind user-mode
// networking, not one on the LAN.
func reportAddr(ctx context.Context, passt bool) {
	a := SlirpGuestAddr
	if passt {
		var ok bool
		if a, ok = passtGuestAddr(); !ok {
			return
		}
	}
	hostnet.TraceFrom(ctx).ReportAddr(hostnet.GuestAddr{Addr: a, Source: hostnet.SourceUser})
}

// passtGuestAddr returns the IPv4 address passt gives the guest by
// default: that of the host's interface with the first default route.
func passtGuestAddr() (netip.Addr, bool) {
	routes, err := hostnet.RetryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return netip.Addr{}, false
	}
	for _, r := range routes {
		if !defaultRoute(r) || r.LinkIndex == 0 {
			continue
		}
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, unix.AF_INET) })
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if a, ok := netip.AddrFromSlice(ad.IP.To4()); ok && ad.Scope == unix.RT_SCOPE_UNIVERSE {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// defaultRoute reports whether r is a default route (netlink gives
// 0.0.0.0/0 as a nil Dst, or as the prefix itself).
func defaultRoute(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}
