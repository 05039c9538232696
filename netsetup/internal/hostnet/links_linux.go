package hostnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/rundir"
	"golang.org/x/sys/unix"
)

// KillWait bounds how long cleanup waits for a killed process to exit.
const KillWait = 5 * time.Second

// recordedLink returns the link named by o's "dev", or nil when it is gone
// (and with it every route, neighbour and address on it). It can also go
// between this look-up and the deletion that follows (a tap goes once
// QEMU's last fd on it closes, which a kill just before may still be
// doing): the callers take ENODEV then as gone too.
func recordedLink(h *netlink.Handle, o rundir.Object) (netlink.Link, error) {
	l, err := h.LinkByName(o.Detail["dev"])
	if IsNotFound(err) {
		return nil, nil
	}
	return l, err
}

// DeleteRoute deletes the recorded route (destination o.Name through
// o.Detail["dev"]) if it is still there.
func DeleteRoute(h *netlink.Handle, o rundir.Object) error {
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
	routes, err := RetryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(family, &netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
	})
	if IsNotFound(err) {
		return nil // the link went in the meantime, and its routes with it
	}
	if err != nil {
		return err
	}
	for i := range routes {
		if err := h.RouteDel(&routes[i]); err != nil && !errors.Is(err, unix.ESRCH) && !IsNotFound(err) {
			return err
		}
	}
	return nil
}

// DeleteNeigh deletes the recorded neighbour (or proxy) entry.
func DeleteNeigh(h *netlink.Handle, o rundir.Object) error {
	ip := net.ParseIP(o.Name)
	if ip == nil {
		return fmt.Errorf("bad neighbour address %q", o.Name)
	}
	if o.Detail["proxy"] == "1" && proxyKept(o) {
		return nil // another VM's too (SharedProxyObject)
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
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) && !IsNotFound(err) {
		return err
	}
	return nil
}

// DeleteAddr deletes the recorded address from its link.
func DeleteAddr(h *netlink.Handle, o rundir.Object) error {
	addr, err := netlink.ParseAddr(o.Name)
	if err != nil {
		return fmt.Errorf("bad address: %w", err)
	}
	l, err := recordedLink(h, o)
	if l == nil || err != nil {
		return err
	}
	err = h.AddrDel(l, addr)
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) && !IsNotFound(err) {
		return err
	}
	return nil
}

// DeleteOwnedLink deletes the recorded link o if it exists and is vmrun's
// (see Owns); a link that is not is left alone (ErrForeignLink).
func DeleteOwnedLink(h *netlink.Handle, o rundir.Object) error {
	l, err := h.LinkByName(o.Name)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := Owns(o, l); err != nil {
		return err
	}
	if err := h.LinkDel(l); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}

// Owns checks that link l is the one record o describes: it carries the
// recorded alias — or, because the kernel ignores IFLA_IFALIAS when it
// creates a link and vmrun sets the alias right after, it carries no alias
// yet but has the recorded type and MAC (vmrun died between the two).
func Owns(o rundir.Object, l netlink.Link) error {
	a := l.Attrs()
	want := o.Detail["alias"]
	switch {
	case want != "" && a.Alias == want:
		return nil
	case want != "" && a.Alias == "" && o.Detail["mac"] != "" &&
		a.HardwareAddr.String() == o.Detail["mac"] && l.Type() == o.Detail["type"]:
		return nil
	}
	return Refuse(ErrForeignLink, "link %s (%s, alias %q, MAC %s) is not the one vmrun recorded (alias %q): it was left alone",
		o.Name, l.Type(), a.Alias, a.HardwareAddr, want)
}

// KillIfOurs kills process pid only if it still runs and its command line
// contains match (for QEMU: the VM's runtime directory), then waits for it
// to exit. A pidfd pins the process, so a recycled pid is never signalled.
func KillIfOurs(pid int, match string) (killed bool, err error) {
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
	if !exited(fd, KillWait) {
		return true, fmt.Errorf("process %d did not exit within %s of SIGKILL", pid, KillWait)
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
