package ipvtap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// makeShim creates the host side of host ↔ guest traffic: an ipvlan link
// (same port, so L2 and the bridge flag too) on the parent in vmrun's
// namespace, up, without addresses. The routes and neighbour entries on it
// are added as guest addresses are registered; they go with the shim.
func (x *guest) makeShim(s *hostnet.Setup) error {
	if x.shimName == "" {
		return nil
	}
	// Registered before the shim's own undo, so it runs after the shim is
	// gone (and its routes and neighbour entries with it).
	s.OnUndo(x.dropHostEntries)
	err := s.RecordLink(x.shimObject(), func() {
		x.mu.Lock()
		x.shimGone = true
		x.mu.Unlock()
	})
	if err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex = x.shimName, x.parentIx
	shim := &netlink.IPVlan{LinkAttrs: la, Mode: netlink.IPVLAN_MODE_L2, Flag: netlink.IPVLAN_FLAG_BRIDGE}
	if err := s.H.LinkAdd(shim); err != nil {
		return fmt.Errorf("host-side shim %s: %w", x.shimName, ipvlanAddError(x.parent, err))
	}
	if err := s.H.LinkSetAlias(shim, hostnet.OwnerAlias(s.Cfg.VM)); err != nil {
		return fmt.Errorf("host-side shim %s: %w", x.shimName, err)
	}
	if err := hostnet.SilenceIPv6Link(s.H, shim); err != nil {
		return fmt.Errorf("host-side shim %s: %w", x.shimName, err)
	}
	if err := s.H.LinkSetUp(shim); err != nil {
		return fmt.Errorf("host-side shim %s: %w", x.shimName, err)
	}
	x.shimIx = shim.Attrs().Index
	return nil
}

// loosenRPFilter sets rp_filter to 2 (loose) on the parent when strict
// filtering is in force there: the guest's packets to the host arrive on
// the parent while the route back to the guest leaves by the shim. The old
// value is recorded first and restored by Undo. The sysctl file stays open
// so the restore reaches this namespace's sysctl, whatever thread Undo
// runs on.
func (x *guest) loosenRPFilter(s *hostnet.Setup) error {
	if x.shimName == "" {
		return nil
	}
	path := "net/ipv4/conf/" + x.parent + "/rp_filter"
	f, err := os.OpenFile(filepath.Join("/proc/sys", path), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no IPv4
	}
	if err != nil {
		return err
	}
	old, err := hostnet.ReadSysctlFile(f)
	if err != nil {
		f.Close()
		return err
	}
	all, _ := os.ReadFile("/proc/sys/net/ipv4/conf/all/rp_filter")
	if max(old, strings.TrimSpace(string(all))) != "1" {
		f.Close()
		return nil // off or loose already: the effective value is the larger one
	}
	obj, rec := hostnet.SysctlObject(path, old), s.Rec
	if err := rec.Record(obj); err != nil {
		f.Close()
		return err
	}
	s.OnUndo(func() error {
		defer f.Close()
		if others := x.otherShims(); others != "" {
			s.Trace.ReportEvent(fmt.Sprintf("rp_filter of %s left at 2: %s still need it", x.parent, others))
		} else if _, err := f.WriteAt([]byte(old), 0); err != nil {
			return fmt.Errorf("restore %s to %s: %w", path, old, err)
		}
		return rec.Forget(obj)
	})
	if _, err := f.WriteAt([]byte("2"), 0); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// otherShims names the shims of other running VMs on the same parent
// (they need rp_filter loose too), or "": ipvlan links with vmrun's alias
// whose owned name ends in the shim's role letter, as this one's does.
func (x *guest) otherShims() string {
	links, err := hostnet.RetryDump(x.bh.LinkList)
	if err != nil {
		return ""
	}
	var names []string
	for _, l := range links {
		a := l.Attrs()
		if a.ParentIndex == x.parentIx && a.Name != x.shimName && l.Type() == "ipvlan" &&
			strings.HasPrefix(a.Alias, hostnet.OwnerAlias("")) && strings.HasSuffix(a.Name, x.shimName[len(x.shimName)-1:]) {
			names = append(names, a.Name)
		}
	}
	return strings.Join(names, ", ")
}

// addHostEntry routes guest IPv4 address a through the shim, from the
// host's address on the parent, with a permanent neighbour entry at the
// parent's (the guest's) MAC; both are recorded first.
func (x *guest) addHostEntry(a netip.Addr) error {
	dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
	r := &netlink.Route{LinkIndex: x.shimIx, Dst: dst, Scope: netlink.SCOPE_LINK, Src: x.hostIPv4()}
	if err := x.s.Rec.Record(hostnet.RouteObject(dst, x.shimName)); err != nil {
		return err
	}
	x.entries[a] = true
	if err := x.bh.RouteReplace(r); err != nil {
		return fmt.Errorf("route to %s via %s: %w", a, x.shimName, err)
	}
	if err := x.s.Rec.Record(hostnet.NeighObject(dst.IP, x.shimName, false)); err != nil {
		return err
	}
	n := &netlink.Neigh{LinkIndex: x.shimIx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: dst.IP, HardwareAddr: x.guestMAC}
	if err := x.bh.NeighSet(n); err != nil {
		return fmt.Errorf("neighbour entry for %s on %s: %w", a, x.shimName, err)
	}
	return nil
}

// hostIPv4 is the host's first global IPv4 address on the parent (the
// source of its packets to the guest), or nil.
func (x *guest) hostIPv4() net.IP {
	if x.setupFacts != nil {
		return x.setupFacts.hostV4
	}
	return hostnet.HostIPv4(x.bh, x.parentIx)
}

// removeHostEntry deletes the route and neighbour entry of a and forgets them.
func (x *guest) removeHostEntry(a netip.Addr) error {
	dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
	var errs []error
	if err := x.bh.RouteDel(&netlink.Route{LinkIndex: x.shimIx, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil && !errors.Is(err, unix.ESRCH) {
		errs = append(errs, err)
	}
	err := x.bh.NeighDel(&netlink.Neigh{LinkIndex: x.shimIx, Family: netlink.FAMILY_V4, IP: dst.IP})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, err)
	}
	delete(x.entries, a)
	errs = append(errs, x.s.Rec.Forget(hostnet.NeighObject(dst.IP, x.shimName, false)), x.s.Rec.Forget(hostnet.RouteObject(dst, x.shimName)))
	return errors.Join(errs...)
}

// dropHostEntries is the undo of the host routes and neighbour entries:
// they went with the shim; only the records remain to forget (or, if the
// shim could not be deleted, the entries too).
func (x *guest) dropHostEntries() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	var errs []error
	for a := range x.entries {
		dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
		if !x.shimGone {
			errs = append(errs, x.removeHostEntry(a))
			continue
		}
		delete(x.entries, a)
		errs = append(errs, x.s.Rec.Forget(hostnet.NeighObject(dst.IP, x.shimName, false)), x.s.Rec.Forget(hostnet.RouteObject(dst, x.shimName)))
	}
	return errors.Join(errs...)
}

// addHostEntryAgain restores a host entry (already recorded).
func (x *guest) addHostEntryAgain(a netip.Addr) error {
	dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
	if err := x.bh.RouteReplace(&netlink.Route{LinkIndex: x.shimIx, Dst: dst, Scope: netlink.SCOPE_LINK, Src: x.hostIPv4()}); err != nil {
		return err
	}
	return x.bh.NeighSet(&netlink.Neigh{LinkIndex: x.shimIx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: dst.IP, HardwareAddr: x.guestMAC})
}
