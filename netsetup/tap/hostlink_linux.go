package tap

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
// onBridge adds, unless --no-host-link, a /32 route through the bridge
// itself (no new link: the bridge is one) to each IPv4 address the guest
// takes, recorded and undone the same way; the guest's ARP for the host's
// address is answered by the bridge (Linux answers ARP for any of its
// addresses).
//
// IPv6 likewise when the bridge has no global IPv6 address of the host's
// and the host has one elsewhere: a /128 route through the bridge to each
// global address the guest takes, source chosen by the kernel; the host
// solicits the guest from the bridge's link-local address. Linux answers
// solicitations only for the receiving link's own addresses, so the
// guest's for the host's source address is answered by proxy NDP on the
// bridge: a proxy entry for that address (recorded, one per source however
// many guest addresses use it), and the bridge's proxy_ndp 1, proxy_delay 0
// and forwarding 1 (recorded, restored when the last VM that set them on
// this bridge stops: see hostnet.Sysctl's Bridge). forwarding 1 on one
// link forwards nothing (all/forwarding decides that), but the bridge then
// acts as a router's link: it ignores router advertisements, and its
// neighbour advertisements carry the router flag. That is a change of the
// user's bridge, for the VM's lifetime; README's table of modes says so, and
// --no-host-link leaves the bridge alone.

// hostLink is the host link of one macvtap guest, or the host routes
// through the bridge of a bridge guest (onBridge).
type hostLink struct {
	name string // the macvlan's owned name; "" with --no-host-link; the bridge's on a bridge
	// onBridge: the routes go through the bridge, from whichever of the
	// host's addresses the kernel chooses; no link is made.
	bridge bool
	// bridge4, bridge6: on a bridge, the host routes to the guest's IPv4,
	// IPv6 addresses (the bridge has none of the host's of that family).
	bridge4, bridge6 bool
	// srcOf is, on a bridge, each routed IPv6 guest address's source: the
	// host addresses with a proxy NDP entry, and how many use each.
	srcOf map[netip.Addr]netip.Addr

	mu     sync.Mutex
	s      *hostnet.Setup
	link   *netlink.Macvlan    // the macvlan, once made
	ix     int                 // the macvlan's index, once up
	src    net.IP              // the host's address on the parent, or nil
	src6   net.IP              // the host's global IPv6 address on the parent, or nil
	mac    net.HardwareAddr    // the guest's
	routes map[netip.Addr]bool // guest addresses routed (and recorded)
	gone   bool                // the macvlan was deleted, and its routes with it
}

// create makes the macvlan, recorded first with the MAC it is made with:
// a vmrun killed before up has set its alias leaves a link that gc still
// recognises as its own (hostnet.Owns) by that MAC and its type.
func (hl *hostLink) create(s *hostnet.Setup) error {
	if hl.name == "" {
		return nil
	}
	hl.s, hl.routes = s, map[netip.Addr]bool{}
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return fmt.Errorf("host link %s: %w", hl.name, err)
	}
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered, as the kernel's own choice
	// Registered before the link's own undo, so it runs after the link
	// (and its routes with it) is gone.
	s.OnUndo(hl.forgetRoutes)
	err := s.RecordLink(hostnet.LinkObject(s.Cfg.VM, hl.name, "macvlan", mac), func() {
		hl.mu.Lock()
		hl.gone = true
		hl.mu.Unlock()
	})
	if err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex, la.HardwareAddr = hl.name, s.ParentLink.Attrs().Index, mac
	hl.link = &netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := s.H.LinkAdd(hl.link); err != nil {
		return fmt.Errorf("host link %s: %w", hl.name, err)
	}
	return nil
}

// up gives the macvlan create made its alias, keeps it out of IPv6 and
// brings it up.
func (hl *hostLink) up(s *hostnet.Setup) error {
	if hl.name == "" {
		return nil
	}
	ml := hl.link
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

// onBridge sets up the host routes of a bridge guest: none for a family
// of which the host has an address on the bridge (it reaches the guest
// there), none for IPv6 when the host has no global IPv6 address at all.
func (hl *hostLink) onBridge(s *hostnet.Setup) error {
	ix := s.ParentLink.Attrs().Index
	hl.bridge4 = hostnet.HostIPv4(s.H, ix) == nil
	hl.bridge6 = hostIPv6(s.H, ix) == nil && hostHasIPv6(s.H)
	if !hl.bridge4 && !hl.bridge6 {
		return nil
	}
	hl.s, hl.routes, hl.bridge = s, map[netip.Addr]bool{}, true
	hl.name, hl.ix = s.Cfg.Parent, ix
	hl.srcOf = map[netip.Addr]netip.Addr{}
	s.OnUndo(hl.forgetRoutes)
	if !hl.bridge6 {
		return nil
	}
	// The sysctls are restored in this namespace, from whichever thread
	// undoes them; the handle is closed after them.
	ns, err := netns.Get()
	if err != nil {
		return err
	}
	s.OnUndo(ns.Close)
	br := s.Cfg.Parent
	return s.SetSysctls([]hostnet.Sysctl{
		{Path: "net/ipv6/conf/" + br + "/forwarding", Value: "1", Bridge: true},
		{Path: "net/ipv6/conf/" + br + "/proxy_ndp", Value: "1", Bridge: true},
		{Path: "net/ipv6/neigh/" + br + "/proxy_delay", Value: "0", Bridge: true},
	}, ns.UniqueId(), func(fn func() error) error { return hostnet.InNS(ns, fn) })
}

// hostHasIPv6 reports whether the host has a global IPv6 address on any
// link.
func hostHasIPv6(h *netlink.Handle) bool {
	addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V6) })
	if err != nil {
		return false
	}
	for _, ad := range addrs {
		if ad.Scope == int(netlink.SCOPE_UNIVERSE) && ad.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			return true
		}
	}
	return false
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
		switch {
		case a.Is4() && hl.bridge4:
			return net.IPv4zero // the kernel's choice (see above)
		case a.Is6() && hl.bridge6:
			return net.IPv6zero
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
		if a.Is6() && !hl.bridge {
			n := &netlink.Neigh{LinkIndex: hl.ix, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT, IP: dst.IP, HardwareAddr: hl.mac}
			if err := hl.s.H.NeighSet(n); err != nil {
				return err
			}
		}
		src := hl.source(a)
		if src.IsUnspecified() {
			src = nil
		}
		err := hl.s.H.RouteReplace(&netlink.Route{LinkIndex: hl.ix, Dst: dst, Scope: netlink.SCOPE_LINK, Src: src})
		if err != nil || !a.Is6() || !hl.bridge {
			return err
		}
		return hl.proxySource(a)
	})
}

// proxySource makes the bridge answer the guest's solicitations for the
// host's address that the route to guest address a starts from (the
// kernel's choice), with a recorded proxy entry unless another guest
// address already needs it.
func (hl *hostLink) proxySource(a netip.Addr) error {
	rs, err := hl.s.H.RouteGet(a.AsSlice())
	if err != nil {
		return err
	}
	var src netip.Addr
	if len(rs) > 0 {
		src, _ = netip.AddrFromSlice(rs[0].Src)
	}
	if !src.IsValid() {
		return fmt.Errorf("no source address of the host's for %s", a)
	}
	src = src.Unmap()
	if old, had := hl.srcOf[a]; had && old == src {
		return nil // a route replaced: its source's entry is there
	}
	hl.srcOf[a] = src
	if hl.sourceUses(src) > 1 {
		return nil
	}
	obj := hostnet.SharedProxyObject(hl.s.Rec, src.AsSlice(), hl.name, hl.s.Cfg.LinkName)
	// Set, not add: another VM on the bridge may proxy for the same
	// address (DeleteNeigh leaves it to that one, also in gc; the runtime
	// root's lock keeps two VMs' undos from crossing).
	return hostnet.SharedLock(hl.s.Rec, func() error {
		if err := hl.s.Rec.Record(obj); err != nil {
			return err
		}
		return hl.s.H.NeighSet(&netlink.Neigh{LinkIndex: hl.ix, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: src.AsSlice()})
	})
}

// sourceUses is how many routed guest addresses start from host address
// src (srcOf).
func (hl *hostLink) sourceUses(src netip.Addr) int {
	n := 0
	for _, s := range hl.srcOf {
		if s == src {
			n++
		}
	}
	return n
}

// unproxySource drops guest address a's use of its source's proxy entry,
// and the entry (and its record) with the last use.
func (hl *hostLink) unproxySource(a netip.Addr) error {
	src, ok := hl.srcOf[a]
	if !ok {
		return nil
	}
	delete(hl.srcOf, a)
	if hl.sourceUses(src) > 0 {
		return nil
	}
	obj := hostnet.SharedProxyObject(hl.s.Rec, src.AsSlice(), hl.name, hl.s.Cfg.LinkName)
	return hostnet.SharedLock(hl.s.Rec, func() error {
		// DeleteNeigh leaves it to another VM that recorded it.
		err := hostnet.Privileged(func() error { return hostnet.DeleteNeigh(hl.s.H, obj) })
		return errors.Join(err, hostnet.ForgetNow(hl.s.Rec, obj))
	})
}

// unroute removes the route to a (and its neighbour entry) and forgets
// its record.
func (hl *hostLink) unroute(a netip.Addr) error {
	dst := hostRoute(a)
	err := hostnet.Privileged(func() error {
		err := hl.s.H.RouteDel(&netlink.Route{LinkIndex: hl.ix, Dst: dst, Scope: netlink.SCOPE_LINK})
		if a.Is6() && !hl.bridge {
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
	return errors.Join(hl.unproxySource(a), hl.s.Rec.Forget(hostnet.RouteObject(dst, hl.name)))
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
