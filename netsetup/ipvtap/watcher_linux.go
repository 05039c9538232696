package ipvtap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
	"golang.org/x/sys/unix"
)

// startWatcher subscribes to link events in vmrun's namespace and follows
// the parent until Undo.
func (x *guest) startWatcher(s *hostnet.Setup) error {
	h, err := s.GoReopening(hostnet.ServiceWatcher, hostnet.WatcherPolicy, x.openWatcher)
	if err != nil {
		return err
	}
	s.OnUndo(func() error { h.Stop(); return nil })
	return nil
}

// errSubscriptionEnded: the kernel's link events stopped coming.
var errSubscriptionEnded = errors.New("the subscription to link events ended")

// openWatcher subscribes to link events and returns the watcher's
// service, which ends the subscription when it returns.
func (x *guest) openWatcher() (func(context.Context) error, error) {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	var stopped atomic.Bool
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if !stopped.Load() {
				x.s.Trace.ReportEvent(fmt.Sprintf("watching %s: %v", x.parent, err))
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", x.parent, err)
	}
	return func(ctx context.Context) error {
		defer func() {
			stopped.Store(true)
			close(done)
		}()
		return x.watch(ctx, ch)
	}, nil
}

// reannounceAgain is when the guest is announced a second time after the
// parent came back (the first announcement may beat the AP's readiness).
const reannounceAgain = time.Second

// modeCheckEvery is how often the watcher re-reads the port's mode: a
// change that makes no event here (an ipvlan link changed while down, or
// created straight into another namespace) is still found.
const modeCheckEvery = 5 * time.Second

// watch handles link events until ctx ends (nil) or the subscription
// does.
func (x *guest) watch(ctx context.Context, ch <-chan netlink.LinkUpdate) error {
	again := time.NewTimer(time.Hour)
	again.Stop()
	defer again.Stop()
	tick := time.NewTicker(modeCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			x.mu.Lock()
			x.watchMode("a periodic check")
			x.mu.Unlock()
		case <-ctx.Done():
			return nil
		case u, ok := <-ch:
			if !ok {
				return errSubscriptionEnded
			}
			var back bool
			_ = hostnet.Privileged(func() error { back = x.onLinkUpdate(u); return nil })
			if back {
				again.Reset(reannounceAgain)
			}
		case <-again.C:
			x.mu.Lock()
			x.reannounce()
			x.mu.Unlock()
		}
	}
}

// onLinkUpdate handles one link event; it reports whether the guest was
// re-announced (the parent came back).
func (x *guest) onLinkUpdate(u netlink.LinkUpdate) bool {
	a := u.Attrs()
	x.mu.Lock()
	defer x.mu.Unlock()
	if a.Index != x.parentIx {
		if (u.Type() == "ipvlan" || u.Type() == "ipvtap") && a.ParentIndex == x.parentIx && a.Name != x.shimName {
			x.watchMode(fmt.Sprintf("a change of %s link %s", u.Type(), a.Name))
		}
		return false
	}
	if u.Header.Type == unix.RTM_DELLINK {
		x.s.Trace.ReportNotice(fmt.Sprintf("WARNING: %s was removed: the guest is cut off (its ipvtap went with it); stop the VM", x.parent))
		return false
	}
	x.watchMAC(a.HardwareAddr)
	running := a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_RUNNING != 0
	switch {
	case x.online && !running:
		x.online = false
		x.s.Trace.ReportNotice(fmt.Sprintf("%s lost its link (down, roaming or disconnected): the guest is offline until it is back", x.parent))
	case !x.online && running:
		x.online = true
		summary := x.recheck()
		x.reannounce()
		x.s.Trace.ReportNotice(fmt.Sprintf("%s is back: %s; re-announced the guest's addresses to the LAN (gratuitous ARP)", x.parent, summary))
		return true
	}
	return false
}

// watchMAC reports a change of the parent's MAC: the guest's NIC keeps the
// old one, and the access point drops its frames.
func (x *guest) watchMAC(mac net.HardwareAddr) {
	if len(mac) == 0 || bytes.Equal(mac, x.lastMAC) {
		return
	}
	x.lastMAC = append(net.HardwareAddr(nil), mac...)
	if bytes.Equal(mac, x.guestMAC) {
		x.s.Trace.ReportNotice(fmt.Sprintf("%s's MAC is %s again, the guest's: the guest can reach the LAN again", x.parent, mac))
		return
	}
	x.s.Trace.ReportNotice(fmt.Sprintf("%s's MAC changed from %s to %s (MAC address randomisation?), but the guest's NIC still uses %s: the access point drops the guest's frames and the guest is offline until vmrun gives it a NIC with the new MAC once %s is connected again (--follow-uplink on, the default), or the VM is restarted; to avoid it, keep %s's MAC fixed for this network (NetworkManager: nmcli connection modify <wifi> wifi.cloned-mac-address permanent)",
		x.parent, x.guestMAC, mac, x.guestMAC, x.parent, x.parent))
}

// watchMode reports a port mode other than L2 (and its return to L2).
func (x *guest) watchMode(cause string) {
	m, err := x.portMode()
	switch {
	case err != nil:
		x.s.Trace.ReportEvent(fmt.Sprintf("ipvlan mode of %s: %v", x.parent, err))
	case m != hostnet.IPVtapPortMode && m != x.badMode:
		x.badMode = m
		x.s.Trace.ReportNotice(fmt.Sprintf("WARNING: the ipvlan port of %s is now in mode %q, not %q (found on %s; the last ipvlan link created or changed on %s sets the mode of all%s): the guest's ARP and DHCP are dropped; delete that link or make it L2 (ip link set LINK type ipvlan mode l2), or restart the VM", x.parent, m, hostnet.IPVtapPortMode, cause, x.parent, x.otherPortLinks()))
	case m == hostnet.IPVtapPortMode && x.badMode != "":
		x.badMode = ""
		// Each switch of the port's mode flips IFF_NOARP on every ipvlan
		// link of the port, the shim included, and the kernel then flushes
		// the shim's neighbour table, permanent entries too: put the host's
		// entries for the guest back before saying the guest is reachable.
		s := ""
		if failed := x.restoreHostEntries(); len(failed) > 0 {
			s = " (" + strings.Join(failed, ", ") + ")"
		}
		x.s.Trace.ReportNotice(fmt.Sprintf("the ipvlan port of %s is in mode %q again%s", x.parent, m, s))
	}
}

// otherPortLinks names the ipvlan links on the parent in vmrun's namespace
// other than this VM's shim, as ", its ipvlan links here besides this VM's:
// A, B" ("" when there are none or they cannot be listed). The kernel
// reports the port's mode on every link, so the one that changed it cannot
// be told apart: the user sees the candidates.
func (x *guest) otherPortLinks() string {
	links, err := hostnet.RetryDump(netlink.LinkList)
	if err != nil {
		return ""
	}
	var names []string
	for _, l := range links {
		a := l.Attrs()
		if a.ParentIndex == x.parentIx && a.Index != x.parentIx && a.Name != x.shimName && (l.Type() == "ipvlan" || l.Type() == "ipvtap") {
			names = append(names, a.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return ", its ipvlan links here besides this VM's: " + strings.Join(names, ", ")
}

// restoreHostEntries puts the host's route and neighbour entry for each
// registered guest address back on the shim; it returns what failed.
func (x *guest) restoreHostEntries() []string {
	var failed []string
	for a := range x.entries {
		if err := x.addHostEntryAgain(a); err != nil {
			failed = append(failed, fmt.Sprintf("host route to %s: %v", a, err))
		}
	}
	return failed
}

// recheck verifies the ipvtap after the parent came back: up, L2 mode,
// every registered address still on it, every host entry still there.
func (x *guest) recheck() string {
	var fixed []string
	if l, err := x.nh.LinkByIndex(x.link.Attrs().Index); err == nil && l.Attrs().Flags&net.FlagUp == 0 {
		if x.nh.LinkSetUp(l) == nil {
			fixed = append(fixed, "brought the ipvtap up again")
		}
	}
	x.watchMode(x.parent + " coming back")
	have := map[netip.Addr]bool{}
	if addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return x.nh.AddrList(x.link, netlink.FAMILY_ALL) }); err == nil {
		for _, ad := range addrs {
			if a, ok := netip.AddrFromSlice(ad.IP); ok {
				have[a.Unmap()] = true
			}
		}
	}
	for a := range x.addrs {
		if !have[a] {
			if err := x.nh.AddrAdd(x.link, hostAddr(a)); err == nil {
				fixed = append(fixed, "re-registered "+a.String())
			}
		}
	}
	fixed = append(fixed, x.restoreHostEntries()...)
	s := fmt.Sprintf("checked the L2 mode and %d registered address(es)", len(x.addrs))
	if len(fixed) > 0 {
		s += " (" + strings.Join(fixed, ", ") + ")"
	}
	return s
}

// reannounce sends a gratuitous ARP for each registered IPv4 address from
// the ipvtap, as if the guest did, so the LAN's caches point at it again.
func (x *guest) reannounce() {
	if x.conn == nil {
		return
	}
	for a := range x.addrs {
		if !a.Is4() {
			continue
		}
		f, err := learn.GARPFrame(x.guestMAC, a)
		if err == nil {
			_, err = x.conn.WriteTo(f, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		}
		if err != nil {
			x.s.Trace.ReportEvent(fmt.Sprintf("announce %s: %v", a, err))
		}
	}
}
