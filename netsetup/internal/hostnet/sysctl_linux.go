package hostnet

// The one home of the sysctls vmrun changes: read, write-and-record, and
// restore — for one VM, or shared by the routed guests of an uplink.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/rundir"
)

// Detail keys of a recorded sysctl that every routed guest on one uplink
// relies on (the uplink's forwarding and proxy_delay). sharedDevKey names
// the uplink: the sysctl is restored only when no other routed guest is
// left on it, so that the first of two routed VMs to stop does not cut the
// other one off; tapKey names this VM's own tap, whose guest does not
// count as another. netnsKey identifies the network namespace, so that a VM
// that finds the sysctl already set by a running one takes over the value
// that one will not restore (see InheritSysctl).
//
// bridgeKey names the bridge of a bridge guest whose host routes need the
// sysctl (proxy NDP on the user's bridge): it is restored only when no
// other live VM under the runtime root (rootKey) recorded it for the same
// bridge and namespace, so that the first of two such VMs to stop does not
// cut the other one off.
const (
	sharedDevKey = "shared-dev"
	tapKey       = "tap"
	netnsKey     = "netns-id"
	bridgeKey    = "bridge"
	rootKey      = "runtime-root"
)

// Sysctl is one sysctl a mode sets: path under /proc/sys, the value, and
// whether every routed guest of the uplink needs it (Shared), or every
// guest with host routes through the bridge (Bridge; see bridgeKey).
type Sysctl struct {
	Path, Value string
	Shared      bool
	Bridge      bool
}

// SetSysctls sets each sysctl, recorded with its old value before it is
// changed, and restored by the undo. A shared one carries the uplink, this
// VM's link and netnsID (the namespace's unique id) in its record; when it
// already has its value, the value to restore is taken over from the
// running VM that set it (see InheritSysctl). inNS runs the restore in the
// namespace the set-up ran in (undo may run on any thread).
func (s *Setup) SetSysctls(list []Sysctl, netnsID string, inNS func(func() error) error) error {
	for _, sc := range list {
		if !sc.Bridge {
			if err := s.setSysctl(sc, netnsID, inNS); err != nil {
				return err
			}
			continue
		}
		// Under the runtime root's lock: another VM on the bridge may be
		// deciding whether to restore it (see bridgeKey).
		if err := SharedLock(s.Rec, func() error { return s.setSysctl(sc, netnsID, inNS) }); err != nil {
			return err
		}
	}
	return nil
}

// setSysctl is SetSysctls for one sysctl.
func (s *Setup) setSysctl(sc Sysctl, netnsID string, inNS func(func() error) error) error {
	old, err := ReadSysctl(sc.Path)
	if err != nil {
		return err
	}
	obj := SysctlObject(sc.Path, old)
	switch {
	case sc.Shared:
		obj.Detail = map[string]string{sharedDevKey: s.Cfg.Parent, tapKey: s.Cfg.LinkName, netnsKey: netnsID}
	case sc.Bridge:
		obj.Detail = map[string]string{bridgeKey: s.Cfg.Parent, tapKey: s.Cfg.LinkName, netnsKey: netnsID}
		if d, ok := s.Rec.(*rundir.Dir); ok {
			obj.Detail[rootKey] = filepath.Dir(d.Path)
		}
	}
	if (sc.Shared || sc.Bridge) && old == sc.Value {
		InheritSysctl(s.Rec, &obj)
	}
	h, rec := s.H, s.Rec
	undo := func() error {
		return errors.Join(inNS(func() error { return UndoSysctl(h, obj) }), rec.Forget(obj))
	}
	if sc.Bridge {
		undo = func() error {
			return SharedLock(rec, func() error {
				return errors.Join(inNS(func() error { return UndoSysctl(h, obj) }), ForgetNow(rec, obj))
			})
		}
	}
	return s.AddRecorded(obj, func() error { return WriteSysctl(sc.Path, sc.Value) }, undo)
}

// SharedLock runs fn under rec's runtime root's lock (rundir's
// SharedLock) when rec is a *rundir.Dir; fn runs alone otherwise.
func SharedLock(rec Recorder, fn func() error) error {
	if d, ok := rec.(*rundir.Dir); ok {
		return d.SharedLock(fn)
	}
	return fn()
}

// ForgetNow forgets obj, at once on disk when rec is a *rundir.Dir.
func ForgetNow(rec Recorder, obj rundir.Object) error {
	if d, ok := rec.(*rundir.Dir); ok {
		return d.ForgetNow(obj)
	}
	return rec.Forget(obj)
}

// ReadSysctl reads /proc/sys/path of the calling thread's namespace.
func ReadSysctl(p string) (string, error) {
	b, err := os.ReadFile(path.Join("/proc/sys", p))
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", p, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteSysctl writes /proc/sys/path of the calling thread's namespace.
func WriteSysctl(p, value string) error {
	if err := os.WriteFile(path.Join("/proc/sys", p), []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", p, value, err)
	}
	return nil
}

// InheritSysctl handles a shared sysctl that already has the value routed
// mode needs: when another live VM under the same runtime root recorded
// it (same path, uplink and namespace), that VM changed it and will leave
// it set for this one, so this VM takes over the value to restore from
// that record. Without a runtime directory (rec is not a *rundir.Dir)
// there is nothing to look at.
func InheritSysctl(rec Recorder, obj *rundir.Object) {
	d, ok := rec.(*rundir.Dir)
	if !ok {
		return
	}
	entries, err := rundir.List(filepath.Dir(d.Path))
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Path == d.Path || !e.Live || e.State == nil {
			continue
		}
		for _, o := range e.State.Objects {
			if o.Kind == ObjSysctl && o.Name == obj.Name && o.Detail[sharedDevKey] == obj.Detail[sharedDevKey] &&
				o.Detail[bridgeKey] == obj.Detail[bridgeKey] && o.Detail[netnsKey] == obj.Detail[netnsKey] {
				obj.Old = o.Old
				return
			}
		}
	}
}

// UndoSysctl restores a recorded sysctl, unless it is shared by the
// routed guests of a link (sharedDevKey), or by the guests with host
// routes through a bridge (bridgeKey), and another VM's is still there:
// then it is left as it is, for that guest.
func UndoSysctl(h *netlink.Handle, o rundir.Object) error {
	if o.Detail[bridgeKey] != "" && bridgeSysctlKept(o) {
		return nil
	}
	if dev := o.Detail[sharedDevKey]; dev != "" {
		family := netlink.FAMILY_V4
		if strings.HasPrefix(o.Name, "net/ipv6/") {
			family = netlink.FAMILY_V6
		}
		inUse, err := routedGuestsOn(h, dev, o.Detail[tapKey], family)
		if err != nil {
			return err
		}
		if inUse {
			return nil
		}
	}
	return RestoreSysctl(o.Name, o.Old)
}

// bridgeSysctlKept reports whether another live VM under the runtime
// root of bridge sysctl record o recorded the same sysctl for the same
// bridge and namespace: it still needs the value.
func bridgeSysctlKept(o rundir.Object) bool {
	return o.Detail[rootKey] != "" && rundir.LiveRecorded(o.Detail[rootKey], func(other rundir.Object) bool {
		return other.Kind == ObjSysctl && other.Name == o.Name && other.Detail[bridgeKey] == o.Detail[bridgeKey] &&
			other.Detail[netnsKey] == o.Detail[netnsKey] && other.Detail[tapKey] != o.Detail[tapKey]
	})
}

// SharedProxyObject is the record of a proxy entry for ip on link dev that
// other VMs under rec's runtime root may need too (the host's address on a
// bridge, behind the VM of tap): DeleteNeigh leaves the entry while
// another live VM recorded it (proxyKept).
func SharedProxyObject(rec Recorder, ip net.IP, dev, tap string) rundir.Object {
	o := NeighObject(ip, dev, true)
	if d, ok := rec.(*rundir.Dir); ok {
		o.Detail[rootKey], o.Detail[tapKey] = filepath.Dir(d.Path), tap
	}
	return o
}

// proxyKept reports whether a live VM other than the one of shared proxy
// record o (SharedProxyObject) recorded the same entry.
func proxyKept(o rundir.Object) bool {
	return o.Detail[rootKey] != "" && rundir.LiveRecorded(o.Detail[rootKey], func(other rundir.Object) bool {
		return other.Kind == ObjNeigh && other.Name == o.Name && other.Detail["dev"] == o.Detail["dev"] &&
			other.Detail["proxy"] == "1" && other.Detail[tapKey] != o.Detail[tapKey]
	})
}

// routedGuestsOn reports whether link dev still answers for a routed
// guest of vmrun other than the one behind link self: a proxy entry of the
// family on dev whose address is routed through a link carrying a vmrun
// alias (false when dev is gone). Proxy entries of others do not count:
// they are not vmrun's to keep.
func routedGuestsOn(h *netlink.Handle, dev, self string, family int) (bool, error) {
	l, err := h.LinkByName(dev)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	proxies, err := RetryDump(func() ([]netlink.Neigh, error) { return h.NeighProxyList(l.Attrs().Index, family) })
	if err != nil {
		return false, fmt.Errorf("proxy entries on %s: %w", dev, err)
	}
	for _, n := range proxies {
		bits := 8 * len(n.IP.To16())
		if ip4 := n.IP.To4(); ip4 != nil {
			n.IP, bits = ip4, 32
		}
		dst := &net.IPNet{IP: n.IP, Mask: net.CIDRMask(bits, bits)}
		routes, err := RetryDump(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(family, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
		})
		if err != nil {
			return false, fmt.Errorf("routes to %s: %w", n.IP, err)
		}
		for _, r := range routes {
			out, err := h.LinkByIndex(r.LinkIndex)
			if err == nil && out.Attrs().Name != self && strings.HasPrefix(out.Attrs().Alias, OwnerAlias("")) {
				return true, nil
			}
		}
	}
	return false, nil
}

// RestoreSysctl writes old back to /proc/sys/path; a sysctl that no longer
// exists (its interface is gone) needs no restoring.
func RestoreSysctl(path, old string) error {
	clean := filepath.Clean(path)
	if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
		return fmt.Errorf("sysctl path %q is not under /proc/sys", path)
	}
	err := os.WriteFile(filepath.Join("/proc/sys", clean), []byte(old), 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// ReadSysctlFile reads an open sysctl file from its start.
func ReadSysctlFile(f *os.File) (string, error) {
	b := make([]byte, 64)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimSpace(string(b[:n])), nil
}

// SetSysctlRecorded sets sysctl p to value when it has another value,
// recording the old one with record first so that undo restores it (for
// state shared by several VMs, whose record is not one VM's). It reports
// whether it changed the sysctl.
func SetSysctlRecorded(record func(rundir.Object) error, p, value string) (changed bool, err error) {
	old, err := ReadSysctl(p)
	if err != nil {
		return false, err
	}
	if old == value {
		return false, nil
	}
	if err := record(SysctlObject(p, old)); err != nil {
		return false, err
	}
	return true, WriteSysctl(p, value)
}
