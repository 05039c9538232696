package netsetup

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/rundir"
	"golang.org/x/sys/unix"
)

// killWait bounds how long cleanup waits for a killed process to exit.
const killWait = 5 * time.Second

// Undo removes or restores recorded objects in reverse order, in the
// network namespace of the calling thread (or the object's Netns). It is
// idempotent: what is already gone counts as undone. A link is deleted only
// while it carries vmrun's alias; a same-named link without it is left
// alone and reported (ErrForeignLink).
func Undo(objs []rundir.Object) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer caps.RaiseAll()()
	_, err := undoObjects(objs)
	return err
}

// undoObjects undoes objs in reverse order and returns those that could
// not be undone (and must stay recorded), in their original order.
func undoObjects(objs []rundir.Object) (left []rundir.Object, err error) {
	h, err := newHandle()
	if err != nil {
		return objs, err
	}
	defer h.Close()
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		if err := undoObject(h, o); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", o.Kind, o.Name, err))
			if !errors.Is(err, ErrForeignLink) {
				left = append([]rundir.Object{o}, left...)
			}
		}
	}
	return left, errors.Join(errs...)
}

// undoObject undoes one object; later modes add their kinds here.
func undoObject(h *netlink.Handle, o rundir.Object) error {
	if o.Netns != "" {
		return undoInNetns(o)
	}
	switch o.Kind {
	case ObjLink:
		return deleteOwnedLink(h, o)
	case ObjSysctl:
		return undoSysctl(h, o)
	case ObjProcess:
		pid, err := strconv.Atoi(o.Name)
		if err != nil {
			return fmt.Errorf("bad pid: %w", err)
		}
		_, err = killIfOurs(pid, o.Detail["match"])
		return err
	case ObjRoute:
		return deleteRoute(h, o)
	case ObjNeigh:
		return deleteNeigh(h, o)
	case ObjAddr:
		return deleteAddr(h, o)
	case ObjNftTable:
		return deleteNftTable(o)
	case ObjNATMember:
		return natLeave(o.Detail["dir"], o.Name, nil)
	}
	return fmt.Errorf("%w %q", ErrUnknownObject, o.Kind)
}

// recordedLink returns the link named by o's "dev", or nil when it is gone
// (and with it every route, neighbour and address on it).
func recordedLink(h *netlink.Handle, o rundir.Object) (netlink.Link, error) {
	l, err := h.LinkByName(o.Detail["dev"])
	if isNotFound(err) {
		return nil, nil
	}
	return l, err
}

// deleteRoute deletes the recorded route (destination o.Name through
// o.Detail["dev"]) if it is still there.
func deleteRoute(h *netlink.Handle, o rundir.Object) error {
	_, dst, err := net.ParseCIDR(o.Name)
	if err != nil {
		return fmt.Errorf("bad route destination: %w", err)
	}
	l, err := recordedLink(h, o)
	if l == nil || err != nil {
		return err
	}
	family := netlink.FAMILY_V4
	if dst.IP.To4() == nil {
		family = netlink.FAMILY_V6
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(family, &netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
	})
	if err != nil {
		return err
	}
	for i := range routes {
		if err := h.RouteDel(&routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

// deleteNeigh deletes the recorded neighbour (or proxy) entry.
func deleteNeigh(h *netlink.Handle, o rundir.Object) error {
	ip := net.ParseIP(o.Name)
	if ip == nil {
		return fmt.Errorf("bad neighbour address %q", o.Name)
	}
	l, err := recordedLink(h, o)
	if l == nil || err != nil {
		return err
	}
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: ip, Family: netlink.FAMILY_V4}
	if ip.To4() == nil {
		n.Family = netlink.FAMILY_V6
	}
	if o.Detail["proxy"] == "1" {
		n.Flags = netlink.NTF_PROXY
	}
	err = h.NeighDel(n)
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// deleteAddr deletes the recorded address from its link.
func deleteAddr(h *netlink.Handle, o rundir.Object) error {
	addr, err := netlink.ParseAddr(o.Name)
	if err != nil {
		return fmt.Errorf("bad address: %w", err)
	}
	l, err := recordedLink(h, o)
	if l == nil || err != nil {
		return err
	}
	err = h.AddrDel(l, addr)
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// undoInNetns undoes an object that lives in another network namespace;
// when that namespace is gone, so is the object.
func undoInNetns(o rundir.Object) error {
	path := o.Netns
	o.Netns = ""
	err := inNetns(path, func() error {
		h, err := newHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		return undoObject(h, o)
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// deleteOwnedLink deletes the recorded link o if it exists and is vmrun's
// (see owns); a link that is not is left alone (ErrForeignLink).
func deleteOwnedLink(h *netlink.Handle, o rundir.Object) error {
	l, err := h.LinkByName(o.Name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := owns(o, l); err != nil {
		return err
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// owns checks that link l is the one record o describes: it carries the
// recorded alias — or, because the kernel ignores IFLA_IFALIAS when it
// creates a link and vmrun sets the alias right after, it carries no alias
// yet but has the recorded type and MAC (vmrun died between the two).
func owns(o rundir.Object, l netlink.Link) error {
	a := l.Attrs()
	want := o.Detail["alias"]
	switch {
	case want != "" && a.Alias == want:
		return nil
	case want != "" && a.Alias == "" && o.Detail["mac"] != "" &&
		a.HardwareAddr.String() == o.Detail["mac"] && l.Type() == o.Detail["type"]:
		return nil
	}
	return refuse(ErrForeignLink, "link %s (%s, alias %q, MAC %s) is not the one vmrun recorded (alias %q): it was left alone",
		o.Name, l.Type(), a.Alias, a.HardwareAddr, want)
}

// restoreSysctl writes old back to /proc/sys/path; a sysctl that no longer
// exists (its interface is gone) needs no restoring.
func restoreSysctl(path, old string) error {
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

// killIfOurs kills process pid only if it still runs and its command line
// contains match (for QEMU: the VM's runtime directory), then waits for it
// to exit. A pidfd pins the process, so a recycled pid is never signalled.
func killIfOurs(pid int, match string) (killed bool, err error) {
	if pid <= 0 || match == "" {
		return false, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pidfd for %d: %w", pid, err)
	}
	defer unix.Close(fd)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	// The pidfd's process still running after the read means the read was
	// of that process, not of a successor with the same pid.
	if err != nil || exited(fd, 0) || !bytes.Contains(cmdline, []byte(match)) {
		return false, nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return false, fmt.Errorf("kill %d: %w", pid, err)
	}
	if !exited(fd, killWait) {
		return true, fmt.Errorf("process %d did not exit within %s of SIGKILL", pid, killWait)
	}
	return true, nil
}

// exited waits up to d for the pidfd's process to exit.
func exited(pidfd int, d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(d.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// GCState cleans up after a vmrun that died, from the state it left in
// runtime directory dir (as rundir.Create returns it): it kills the VM's
// QEMU if that still runs from dir (never anything else), then undoes the
// recorded objects. On error the objects not undone are still in st's
// directory state; keep it for `vmrun gc`.
func GCState(dir string, st *rundir.State) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer caps.RaiseAll()()
	_, err := reclaim(dir, st)
	return err
}

// reclaim is GCState returning the objects that could not be undone.
func reclaim(dir string, st *rundir.State) (left []rundir.Object, err error) {
	if st == nil {
		return nil, nil
	}
	if _, err := killIfOurs(st.QEMUPID, dir); err != nil {
		return st.Objects, fmt.Errorf("QEMU of %s: %w", dir, err)
	}
	return undoObjects(st.Objects)
}

// GC cleans up every VM directory under root that no live vmrun holds:
// kills its QEMU if still running from that directory, undoes its recorded
// objects and removes the directory. It returns the names of the VMs it
// removed; a directory whose objects could not all be undone stays, with
// the rest recorded. Links that carry a vmrun alias but belong to no VM
// directory are only reported through logf (they may belong to a vmrun
// using another runtime root). It works in the calling thread's network
// namespace.
func GC(root string, logf func(string, ...any)) (removed []string, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer caps.RaiseAll()()
	entries, err := rundir.List(root)
	if err != nil {
		return nil, fmt.Errorf("runtime root %s: %w", root, err)
	}
	var errs []error
	known := map[string]bool{}
	for _, e := range entries {
		known[e.Name] = true
		if e.Live {
			continue
		}
		if e.Err != nil {
			errs = append(errs, fmt.Errorf("VM %s: state file unreadable, left for inspection: %w", e.Name, e.Err))
			continue
		}
		ok, err := gcDir(root, e.Name, logf)
		if err != nil {
			errs = append(errs, fmt.Errorf("VM %s: %w", e.Name, err))
		}
		if ok {
			removed = append(removed, e.Name)
		}
	}
	if err := natSweep(root); err != nil {
		errs = append(errs, fmt.Errorf("NAT network: %w", err))
	}
	reportOrphans(known, logf)
	return removed, errors.Join(errs...)
}

// gcDir takes the lock of one dead VM's directory, reclaims what it
// recorded and removes it.
func gcDir(root, name string, logf func(string, ...any)) (bool, error) {
	d, stale, err := rundir.Create(root, name)
	if errors.Is(err, rundir.ErrBusy) {
		return false, nil // it came alive meanwhile
	}
	if err != nil {
		return false, err
	}
	left, err := reclaim(d.Path, stale)
	for _, e := range splitJoined(err) {
		if errors.Is(e, ErrForeignLink) {
			logf("VM %s: %v", name, e)
		}
	}
	if len(left) > 0 {
		// Keep the directory with what is left recorded, for a later gc.
		uerr := d.Update(func(s *rundir.State) { s.Objects = left })
		return false, errors.Join(err, uerr, d.Close())
	}
	if err := d.Remove(); err != nil {
		return false, err
	}
	logf("VM %s: cleaned up", name)
	return true, nil
}

// splitJoined returns the errors joined in err (or err itself).
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// reportOrphans logs links carrying a vmrun alias whose VM has no
// directory under the runtime root.
func reportOrphans(known map[string]bool, logf func(string, ...any)) {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		logf("listing links: %v", err)
		return
	}
	for _, l := range links {
		vm, ok := strings.CutPrefix(l.Attrs().Alias, OwnerAlias(""))
		if ok && !known[vm] {
			logf("link %s carries alias %q but no VM directory records it; if no vmrun with another runtime directory uses it, delete it (ip link del %s)", l.Attrs().Name, l.Attrs().Alias, l.Attrs().Name)
		}
	}
}
