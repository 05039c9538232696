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

// hostLink is the host link of one macvtap guest.
type hostLink struct {
	name string // the macvlan's owned name; "" with --no-host-link

	mu     sync.Mutex
	s      *hostnet.Setup
	ix     int                 // the macvlan's index, once up
	src    net.IP              // the host's address on the parent, or nil
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
	hl.ix, hl.src = ml.Attrs().Index, hostnet.HostIPv4(s.H, s.ParentLink.Attrs().Index)
	if hl.src == nil {
		s.Trace.ReportNotice(fmt.Sprintf("%s has no IPv4 address: this host cannot reach the guest through %s", s.Cfg.Parent, hl.name))
	}
	return nil
}

// follow routes a guest address the watcher saw to the guest, or removes
// the route of one it gave up. It runs in the watcher's goroutine, which
// Undo stops before it removes the link.
func (hl *hostLink) follow(a hostnet.GuestAddr) {
	if hl.name == "" || !a.Addr.Is4() {
		return
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if hl.gone || hl.src == nil || hl.routes[a.Addr] == !a.Drop {
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

// route adds the /32 route to a through the macvlan, recorded first.
func (hl *hostLink) route(a netip.Addr) error {
	dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
	if err := hl.s.Rec.Record(hostnet.RouteObject(dst, hl.name)); err != nil {
		return err
	}
	hl.routes[a] = true
	return hostnet.Privileged(func() error {
		return hl.s.H.RouteReplace(&netlink.Route{LinkIndex: hl.ix, Dst: dst, Scope: netlink.SCOPE_LINK, Src: hl.src})
	})
}

// unroute removes the route to a and forgets its record.
func (hl *hostLink) unroute(a netip.Addr) error {
	dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
	err := hostnet.Privileged(func() error {
		return hl.s.H.RouteDel(&netlink.Route{LinkIndex: hl.ix, Dst: dst, Scope: netlink.SCOPE_LINK})
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
		errs = append(errs, hl.s.Rec.Forget(hostnet.RouteObject(&net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, hl.name)))
	}
	return errors.Join(errs...)
}
