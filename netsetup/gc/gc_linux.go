package gc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/nat"
)

// Undo removes or restores recorded objects in reverse order, in the
// network namespace of the calling thread (or the object's Netns). It is
// idempotent: what is already gone counts as undone. A link is deleted only
// while it carries vmrun's alias; a same-named link without it is left
// alone and reported (hostnet.ErrForeignLink).
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
	return hostnet.UndoEach(objs, undoObject)
}

// undoObject undoes one object; later modes add their kinds here.
func undoObject(h *netlink.Handle, o rundir.Object) error {
	if o.Netns != "" {
		return undoInNetns(o)
	}
	switch o.Kind {
	case hostnet.ObjLink:
		return hostnet.DeleteOwnedLink(h, o)
	case hostnet.ObjSysctl:
		return hostnet.UndoSysctl(h, o)
	case hostnet.ObjProcess:
		pid, err := strconv.Atoi(o.Name)
		if err != nil {
			return fmt.Errorf("bad pid: %w", err)
		}
		_, err = hostnet.KillIfOurs(pid, o.Detail["match"])
		return err
	case hostnet.ObjRoute:
		return hostnet.DeleteRoute(h, o)
	case hostnet.ObjNeigh:
		return hostnet.DeleteNeigh(h, o)
	case hostnet.ObjAddr:
		return hostnet.DeleteAddr(h, o)
	case hostnet.ObjNftTable:
		return nat.DeleteTable(o)
	case hostnet.ObjNATMember:
		return nat.Leave(o.Detail["dir"], o.Name)
	}
	return fmt.Errorf("%w %q", hostnet.ErrUnknownObject, o.Kind)
}

// undoInNetns undoes an object that lives in another network namespace;
// when that namespace is gone, so is the object.
func undoInNetns(o rundir.Object) error {
	path := o.Netns
	o.Netns = ""
	err := hostnet.InNetns(path, func() error {
		h, err := hostnet.NewHandle()
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

// GCState cleans up after a vmrun that died, from the state it left in
// runtime directory dir (as rundir.Create returns it): it kills the VM's
// QEMU if that still runs from dir (never anything else), then undoes the
// recorded objects. On error the objects not undone are still in st's
// directory state; keep it for `vmrun gc`.
func GCState(dir string, st *rundir.State) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer caps.RaiseAll()()
	_, _, err := reclaim(dir, st)
	return err
}

// reclaim is GCState returning the objects that could not be undone and,
// when the record's network namespace is gone, its id.
func reclaim(dir string, st *rundir.State) (left []rundir.Object, goneNetns string, err error) {
	if st == nil {
		return nil, "", nil
	}
	if _, err := hostnet.KillIfOurs(st.QEMUPID, dir); err != nil {
		return st.Objects, "", fmt.Errorf("QEMU of %s: %w", dir, err)
	}
	objs, gone, err := reachable(st)
	if err != nil {
		return st.Objects, "", err
	}
	if gone {
		goneNetns = st.Netns
	}
	left, err = undoObjects(objs)
	return left, goneNetns, err
}

// reachable returns the objects of st to undo from the calling thread's
// network namespace: all of them when vmrun ran in this one (or its record
// does not say where it ran). When it ran in a namespace that is gone
// (gone is true), that namespace took its links, addresses, routes,
// sysctls and nftables tables with it: only the objects that live
// elsewhere are left (its processes, those in a namespace of their own).
// When it ran in another namespace that still exists, the error says where
// to run gc.
func reachable(st *rundir.State) (objs []rundir.Object, gone bool, err error) {
	path, where, err := locate(st)
	switch {
	case err != nil:
		return nil, false, err
	case where == netnsHere:
		return st.Objects, false, nil
	case where == netnsGone:
		for _, o := range st.Objects {
			if o.Kind == hostnet.ObjProcess || o.Netns != "" {
				objs = append(objs, o)
			}
		}
		return objs, true, nil
	}
	return nil, false, fmt.Errorf("%w, net:[%d] (%s), where its vmrun ran: run `%s`", ErrOtherNetns, st.NetnsInode, path, command(path))
}

// Command returns the command that cleans up after st's dead vmrun from
// where its objects are: `vmrun gc` when they are reachable from the
// calling thread's network namespace (or their namespace is gone), else
// gc run in the namespace its vmrun ran in (what gc itself asks for then).
func Command(st *rundir.State) string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	path, where, err := locate(st)
	if err != nil || where != netnsElsewhere {
		return "vmrun gc"
	}
	return command(path)
}

// Where a dead vmrun's network namespace is, seen from the calling
// thread's.
const (
	netnsHere      = iota // the same namespace, or the record does not say
	netnsElsewhere        // another namespace that still exists, at path
	netnsGone             // no process or mount holds it any more
)

// locate finds the network namespace st's vmrun ran in.
func locate(st *rundir.State) (path string, where int, err error) {
	if st.Netns == "" {
		return "", netnsHere, nil
	}
	here, err := hostnet.NetnsID()
	if err != nil {
		return "", 0, err
	}
	if here == st.Netns {
		return "", netnsHere, nil
	}
	path, found := hostnet.FindNetns(st.Netns, st.NetnsInode)
	if !found {
		return "", netnsGone, nil
	}
	return path, netnsElsewhere, nil
}

// command is gc run in the network namespace at path: `ip netns exec`
// for one of iproute2's named namespaces, nsenter otherwise.
func command(path string) string {
	if name, ok := strings.CutPrefix(path, "/run/netns/"); ok && !strings.Contains(name, "/") {
		return "ip netns exec " + name + " vmrun gc"
	}
	return "nsenter --net=" + path + " vmrun gc"
}

// ErrOtherNetns says that a dead vmrun's objects are in another network
// namespace than gc's, one that still exists.
var ErrOtherNetns = errors.New("its links are in another network namespace")

// GC cleans up every VM directory under root that no live vmrun holds:
// kills its QEMU if still running from that directory, undoes its recorded
// objects and removes the directory. It returns the names of the VMs it
// removed; a directory whose objects could not all be undone stays, with
// the rest recorded. Links that carry a vmrun alias but belong to no VM
// directory are only reported through logf (they may belong to a vmrun
// using another runtime root). It works in the calling thread's network
// namespace; of a VM whose namespace is gone it removes the record and the
// NAT state directory of that namespace, if one is left.
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
	if err := nat.Sweep(root); err != nil {
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
	left, goneNetns, err := reclaim(d.Path, stale)
	var natErr error
	if goneNetns != "" {
		// The NAT network that namespace had, if any, went with it: its
		// state directory is all that is left of it.
		if ferr := nat.ForgetNetns(root, goneNetns); ferr != nil {
			natErr = fmt.Errorf("the NAT state of its network namespace, which is gone: %w", ferr)
		}
	}
	for _, e := range splitJoined(err) {
		if errors.Is(e, hostnet.ErrForeignLink) {
			logf("VM %s: %v", name, e)
		}
	}
	if len(left) > 0 {
		// Keep the directory with what is left recorded, for a later gc.
		uerr := d.Update(func(s *rundir.State) { s.Objects = left })
		return false, errors.Join(err, natErr, uerr, d.Close())
	}
	if err := d.Remove(); err != nil {
		return false, errors.Join(err, natErr)
	}
	logf("VM %s: cleaned up", name)
	return true, natErr
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
	links, err := orphanLinks(known)
	if err != nil {
		logf("listing links: %v", err)
		return
	}
	for _, l := range links {
		logf("link %s carries alias %q but no VM directory records it; if no vmrun with another runtime directory uses it, delete it (ip link del %s)", l.Attrs().Name, l.Attrs().Alias, l.Attrs().Name)
	}
}

// orphanLinks returns the links carrying a vmrun alias whose VM is not
// in known.
func orphanLinks(known map[string]bool) ([]netlink.Link, error) {
	links, err := hostnet.RetryDump(netlink.LinkList)
	if err != nil {
		return nil, err
	}
	var out []netlink.Link
	for _, l := range links {
		vm, ok := strings.CutPrefix(l.Attrs().Alias, hostnet.OwnerAlias(""))
		if ok && !known[vm] {
			out = append(out, l)
		}
	}
	return out, nil
}

// Leftovers lists what `vmrun gc` would remove under runtime root root
// in the calling thread's namespace: VM directories no vmrun holds, a NAT
// network no live VM uses, and links carrying a vmrun alias that no VM
// directory records. It changes nothing.
func Leftovers(root string) ([]string, error) {
	var out []string
	entries, err := rundir.List(root)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, e := range entries {
		known[e.Name] = true
		if !e.Live {
			out = append(out, fmt.Sprintf("VM %s: its vmrun is gone (runtime directory %s)", e.Name, e.Path))
		}
	}
	if dir, idle := nat.Idle(root); idle {
		out = append(out, fmt.Sprintf("the NAT network (%s) has no live VM", dir))
	}
	links, err := orphanLinks(known)
	if err != nil {
		return out, err
	}
	for _, l := range links {
		out = append(out, fmt.Sprintf("link %s carries alias %q but no VM directory under %s records it", l.Attrs().Name, l.Attrs().Alias, root))
	}
	return out, nil
}
