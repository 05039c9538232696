package tap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// A macvtap guest and its host share the parent, but the parent's own
// stack never sees what the macvtap sends, nor the macvtap what the host
// sends out of the parent: the host cannot reach its own guest. The host
// link is a macvlan in bridge mode on the same parent, without an address,
// which the macvtap (also in bridge mode) reaches directly, and a /32 route
// through it, from the host's address on the parent, to each IPv4 address
// the guest is seen to take (the watcher of its addresses says which).
//
// IPv6 the same way, with a /128 route to each global address of the
// guest, from the host's global IPv6 address on the parent, and two more
// things ARP gives IPv4 for free: the macvlan has no IPv6 address (it
// must not send router solicitations or take part in the LAN's IPv6), so
// the host cannot solicit the guest's link-layer address — a permanent
// neighbour entry (the guest's MAC is known) replaces it; and Linux
// answers neighbour solicitations only for the receiving link's own
// addresses, so the guest's for the host's address would go unanswered —
// the macvlan proxies NDP for that one address (a proxy entry, which Linux
// serves only on a link with forwarding on: per link, it forwards nothing
// unless the host's all/forwarding is on). The entries and the link's
// settings go with the macvlan; the routes are recorded like the /32s.

// On a bridge (--net bridge), the host reaches its guest through the
// bridge's own interface when it has an address there (the usual br0 that
// holds the host's address). When the bridge has no IPv4 address of the
// host's (a bridge kept for guests, the host's address on another link),
// the host would send to the guest's address by its other routes, if any:
// bridgeRoutes adds, unless --no-host-link, a /32 route through the bridge
// itself (no new link: the bridge is one) to each IPv4 address the guest
// takes, recorded and undone the same way; the guest's ARP for the host's
// address is answered by the bridge (Linux answers ARP for any of its
// addresses). IPv6 is left out on a bridge: answering the guest's
// solicitations would need proxy NDP and forwarding on the user's bridge.

// hostLink is the host link of one macvtap guest, or the host routes
// through the bridge of a bridge guest (onBridge).
type hostLink struct {
	name string // the macvlan's owned name; "" with --no-host-link; the bridge's on a bridge
	// onBridge: the routes go through the bridge, from whichever of the
	// host's addresses the kernel chooses; nothing else is made.
	bridge bool

	mu     sync.Mutex
	s      *hostnet.Setup
	ix     int                 // the macvlan's index, once up
	src    net.IP              // the host's address on the parent, or nil
	src6   net.IP              // the host's global IPv6 address on the parent, or nil
	mac    net.HardwareAddr    // the guest's
	routes map[netip.Addr]bool // guest addresses routed (and recorded)
	gone   bool                // the macvlan was deleted, and its routes with it
}

// create makes the macvlan, recorded first, and brings it up.
func (hl *hostLink) create(s *hostnet.Setup) error {
	if hl.name == "" {
		return nil
	}
	hl.s, hl.routes = s, map[netip.Addr]bool{}
	// Registered before the link's own undo, so it runs after the link
	// (and its routes with it) is gone.
	s.OnUndo(hl.forgetRoutes)
	err := s.RecordLink(hostnet.LinkObject(s.Cfg.VM, hl.name, "macvlan", nil), func() {
		hl.mu.Lock()
		hl.gone = true
		hl.mu.Unlock()
	})
	if err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex = hl.name, s.ParentLink.Attrs().Index
	ml := &netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := s.H.LinkAdd(ml); err != nil {
		return fmt.Errorf("host link %s: %w", hl.name, err)
	}
	for _, f := range []func() error{
		func() error { return s.H.LinkSetAlias(ml, hostnet.OwnerAlias(s.Cfg.VM)) },
		func() error { return hostnet.SilenceIPv6Link(s.H, ml) },
		func() error { return s.H.LinkSetUp(ml) },
	} {
		if err := f(); err != nil {
			return fmt.Errorf("host link %s: %w", hl.name, err)
		}
	}
	hl.ix, hl.src, hl.mac = ml.Attrs().Index, hostnet.HostIPv4(s.H, s.ParentLink.Attrs().Index), s.Cfg.MAC
	if hl.src == nil {
		s.Trace.ReportNotice(fmt.Sprintf("%s has no IPv4 address: this host cannot reach the guest through %s", s.Cfg.Parent, hl.name))
	}
	if src6 := hostIPv6(s.H, s.ParentLink.Attrs().Index); src6 != nil {
		if err := hl.proxyNDP(src6); err != nil {
			return fmt.Errorf("host link %s: %w", hl.name, err)
		}
		hl.src6 = src6
	}
	return nil
}

// onBridge sets up the host routes of a bridge guest: none when the host
// has an IPv4 address on the bridge (it reaches the guest there).
func (hl *hostLink) onBridge(s *hostnet.Setup) error {
	ix := s.ParentLink.Attrs().Index
	if hostnet.HostIPv4(s.H, ix) != nil {
		return nil
	}
	hl.s, hl.routes, hl.bridge = s, map[netip.Addr]bool{}, true
	hl.name, hl.ix = s.Cfg.Parent, ix
	s.OnUndo(hl.forgetRoutes)
	return nil
}

// proxyNDP makes the macvlan answer the guest's neighbour solicitations
// for the host's address src6 (see above), at once (proxy_delay 0).
func (hl *hostLink) proxyNDP(src6 net.IP) error {
	for _, sc := range [][2]string{
		{"net/ipv6/conf/" + hl.name + "/forwarding", "1"},
		{"net/ipv6/conf/" + hl.name + "/proxy_ndp", "1"},
		{"net/ipv6/neigh/" + hl.name + "/proxy_delay", "0"},
	} {
		if err := hostnet.WriteSysctl(sc[0], sc[1]); err != nil {
			return err
		}
	}
	return hl.s.H.NeighAdd(&netlink.Neigh{LinkIndex: hl.ix, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: src6})
}

// hostIPv6 is the host's first global IPv6 address on link ix, or nil.
func hostIPv6(h *netlink.Handle, ix int) net.IP {
	addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) {
		return h.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: ix}}, netlink.FAMILY_V6)
	})
	if err != nil {
		return nil
	}
	for _, ad := range addrs {
		if ad.Scope == int(netlink.SCOPE_UNIVERSE) && ad.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED|unix.IFA_F_DEPRECATED) == 0 {
			return ad.IP
		}
	}
	return nil
}

// follow routes a guest address the watcher saw to the guest, or removes
// the route of one it gave up. It runs in the watcher's goroutine, which
// Undo stops before it removes the link.
func (hl *hostLink) follow(a hostnet.GuestAddr) {
	if hl.name == "" || a.Addr.IsLinkLocalUnicast() {
		return
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if hl.gone || hl.source(a.Addr) == nil || hl.routes[a.Addr] == !a.Drop {
		return
	}
	var err error
	if a.Drop {
		err = hl.unroute(a.Addr)
	} else {
		err = hl.route(a.Addr)
	}
	if err != nil {
		hl.s.Trace.ReportNotice(fmt.Sprintf("%s: the host's route to the guest's %s: %v", hl.name, a.Addr, err))
	}
}

// source is the host's address the route to guest address a starts
// from, nil when the host has none of a's family on the parent.
func (hl *hostLink) source(a netip.Addr) net.IP {
	if hl.bridge {
		if a.Is4() {
			return net.IPv4zero // the kernel's choice (see above)
		}
		return nil
	}
	if a.Is4() {
		return hl.src
	}
	return hl.src6
}

// hostRoute is the destination of the route to a: a /32 or a /128.
func hostRoute(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// route adds the route to a through the macvlan, recorded first (and for
// IPv6, the guest's neighbour entry: see above).
func (hl *hostLink) route(a netip.Addr) error {
	dst := hostRoute(a)
	if err := hl.s.Rec.Record(hostnet.RouteObject(dst, hl.name)); err != nil {
		return err
	}
	hl.routes[a] = true
	return hostnet.Privileged(func() error {
		if a.Is6() {
			n := &netlink.Neigh{LinkIndex: hl.ix, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT, IP: dst.IP, HardwareAddr: hl.mac}
			if err := hl.s.H.NeighSet(n); err != nil {
				return err
			}
		}
		src := hl.source(a)
		if src.IsUnspecified() {
			src = nil
		}
		return hl.s.H.RouteReplace(&netlink.Route{LinkIndex: hl.ix, Dst: dst, Scope: netlink.SCOPE_LINK, Src: src})
	})
}

// unroute removes the route to a (and its neighbour entry) and forgets
// its record.
func (hl *hostLink) unroute(a netip.Addr) error {
	dst := hostRoute(a)
	err := hostnet.Privileged(func() error {
		err := hl.s.H.RouteDel(&netlink.Route{LinkIndex: hl.ix, Dst: dst, Scope: netlink.SCOPE_LINK})
		if a.Is6() {
			nerr := hl.s.H.NeighDel(&netlink.Neigh{LinkIndex: hl.ix, Family: netlink.FAMILY_V6, IP: dst.IP})
			if nerr != nil && !errors.Is(nerr, unix.ENOENT) {
				err = errors.Join(err, nerr)
			}
		}
		return err
	})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	delete(hl.routes, a)
	return hl.s.Rec.Forget(hostnet.RouteObject(dst, hl.name))
}

// forgetRoutes is the undo of the routes: they went with the macvlan; only
// their records remain to forget (or, if it could not be deleted, the
// routes too).
func (hl *hostLink) forgetRoutes() error {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	var errs []error
	for a := range hl.routes {
		if !hl.gone {
			errs = append(errs, hl.unroute(a))
			continue
		}
		delete(hl.routes, a)
		errs = append(errs, hl.s.Rec.Forget(hostnet.RouteObject(hostRoute(a), hl.name)))
	}
	return errors.Join(errs...)
}
