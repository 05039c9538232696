package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
	"github.com/vmrun/vmrun/internal/rundir"
	"golang.org/x/sys/unix"
)

// Detail keys of a recorded sysctl that every routed guest on one uplink
// relies on (the uplink's forwarding and proxy_delay). sharedDevKey names
// the uplink: the sysctl is restored only when no other routed guest is
// left on it, so that the first of two routed VMs to stop does not cut the
// other one off; tapKey names this VM's own tap, whose guest does not
// count as another. netnsKey identifies the network namespace, so that a VM
// that finds the sysctl already set by a running one takes over the value
// that one will not restore (see inheritSysctl).
const (
	sharedDevKey = "shared-dev"
	tapKey       = "tap"
	netnsKey     = "netns-id"
)

// resolvConf is where routed mode finds the host's DNS servers when the
// guest's address is not leased upstream.
const resolvConf = "/etc/resolv.conf"

// routedSteps are the steps of --net routed (DESIGN.md "Routed mode"): the
// guest's address (given, or leased upstream on its behalf), a plain
// non-persistent tap that is on no bridge, vmrun's end of it
// (169.254.0.1/32, fe80::1), forwarding, a /32 route to the guest through
// the tap, a proxy ARP entry for it on the uplink, a DHCP responder on
// the tap that hands the guest its address, and the upstream lease kept
// renewed.
func routedSteps(g *routedGuest) []step {
	return []step{
		{"uplink", g.lookupUplink},
		{"guest address", g.takeAddress},
		{"claim name", (*setup).claimName},
		{"record", (*setup).record},
		{"create", (*setup).createTap},
		{"alias", (*setup).setAlias},
		{"host mac", func(s *setup) error { return s.h.LinkSetHardwareAddr(s.link, hostSideMAC(s.p.MAC)) }},
		{"ipv6 off", (*setup).silenceIPv6},
		{"mtu", (*setup).setTapMTU},
		{"up", func(s *setup) error { return s.h.LinkSetUp(s.link) }},
		{"host addresses", g.addHostAddrs},
		{"route", g.addRoute},
		{"proxy arp", g.addProxyARP},
		{"forwarding", g.enableForwarding},
		{"dhcp responder", g.startResponder},
		{"ipv6", g.startIPv6},
		{"lease keeper", g.startKeeper},
		{"open vhost", (*setup).openVhost},
	}
}

// applyRouted carries out a routed plan.
func applyRouted(ctx context.Context, p Plan, rec Recorder) (*Attachment, error) {
	if err := checkRoutedPlan(p); err != nil {
		return nil, err
	}
	g := &routedGuest{}
	// The tap's MAC is the kernel's until the "host mac" step.
	return applySteps(ctx, p, rec, LinkObject(p.Name, p.LinkName, "tuntap", nil), routedSteps(g))
}

// routedGuest is the state of one routed attachment: what Apply's steps
// learn, and the background services that outlive Apply until Undo.
type routedGuest struct {
	s  *setup         // the Apply that made it (its handle, recorder, trace)
	ns netns.NsHandle // the network namespace Apply ran in

	client  *dhcpupstream.Client // the upstream lease; nil for a static address
	dns     []net.IP
	dnsNote string

	keeper *background // renews the upstream lease

	mu   sync.Mutex
	ip   net.IP      // the guest's address, as routed now
	resp *background // the DHCP responder on the tap

	stopping []*background // cancelled by Undo, waited for after the tap is gone

	tapV6 bool     // the tap has fe80::1 (IPv6 is enabled)
	v6    *routed6 // the shared IPv6 prefixes; nil when the guest has IPv4 only
}

// background is a goroutine that runs until its context is cancelled.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// goBackground runs fn in a goroutine with a context that stop cancels.
func goBackground(fn func(ctx context.Context)) *background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		fn(ctx)
	}()
	return b
}

// stop cancels the goroutine and waits for it to return.
func (b *background) stop() {
	if b == nil {
		return
	}
	b.cancel()
	<-b.done
}

// inNS runs fn in the namespace Apply ran in: sysctl files and new
// sockets belong to the namespace of the thread that opens them, and Undo
// or a lease change may run on any thread. A thread already there (the
// usual case) runs fn itself, locked; another one hands fn to a throwaway
// thread (creating it costs more than the sysctl write). Either way fn
// runs with vmrun's capabilities raised.
func (g *routedGuest) inNS(fn func() error) error {
	runtime.LockOSThread()
	if cur, err := netns.Get(); err == nil {
		same := cur.Equal(g.ns)
		cur.Close()
		if same {
			defer runtime.UnlockOSThread()
			// An unprivileged vmrun's capabilities are effective only
			// while raised (the keeper's thread has none).
			defer caps.RaiseAll()()
			return fn()
		}
	}
	runtime.UnlockOSThread()
	return onThrowawayThread(func() error {
		if err := netns.Set(g.ns); err != nil {
			return fmt.Errorf("enter the network namespace of the VM's links: %w", err)
		}
		return fn()
	})
}

func (g *routedGuest) event(format string, args ...any) {
	g.s.trace.event(fmt.Sprintf(format, args...))
}

func (g *routedGuest) notice(format string, args ...any) {
	g.s.trace.notice(fmt.Sprintf(format, args...))
}

// guestIP returns the guest's current address.
func (g *routedGuest) guestIP() net.IP {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ip
}

// lookupUplink finds the uplink, checks that packet sockets can be opened
// and remembers the namespace.
func (g *routedGuest) lookupUplink(s *setup) error {
	g.s = s
	if err := s.lookupParent(); err != nil {
		return err
	}
	if len(s.parent.Attrs().HardwareAddr) != 6 {
		return refuse(ErrUnsuitable, "%s has no Ethernet address, and routed mode answers ARP for the guest on it; choose an Ethernet or Wi-Fi interface with --net routed:IF", s.p.Parent)
	}
	if !caps.Usable(unix.CAP_NET_RAW) {
		return refuse(ErrNoPrivilege, "--net routed answers the guest's DHCP and leases its address through packet sockets, which need CAP_NET_RAW; run vmrun as root")
	}
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	g.ns = ns
	s.onUndo(ns.Close)
	// Runs after the tap's deletion: the responder's packet socket closes
	// (an RCU grace period in the kernel) while the tap is deleted (more of
	// them) instead of before it.
	s.onUndo(func() error {
		for _, b := range g.stopping {
			<-b.done
		}
		g.stopping = nil
		return nil
	})
	return nil
}

// takeAddress settles the guest's address: the static one, or a lease
// taken from the uplink's DHCP server with the VM's own client identifier
// (released again by the undo).
func (g *routedGuest) takeAddress(s *setup) error {
	p := s.p
	if p.GuestAddr == GuestAddrStatic {
		g.ip = p.GuestIP.To4()
		g.dns, g.dnsNote = routedDNS(nil, readResolvConf())
		g.notice("routed: the guest gets %s (--guest-ip; no lease is taken for it) on %s's LAN", g.ip, p.Parent)
		return nil
	}
	c, err := dhcpupstream.Acquire(s.ctx, dhcpupstream.Config{
		Link: p.Parent, ClientID: dhcpupstream.VMClientID(p.Name), Hostname: p.Name,
		Logf: g.event,
	})
	if err != nil {
		if cerr := s.ctx.Err(); cerr != nil {
			return cerr
		}
		return refuse(ErrNoLease, "no DHCP server on %s gave the guest an address (%v); give it one with --guest-ip ADDRESS, or check %s's network", p.Parent, err, p.Parent)
	}
	g.client = c
	s.onUndo(g.release)
	l := c.Lease()
	g.ip = l.IP.To4()
	g.dns, g.dnsNote = routedDNS(l.DNS, "")
	if len(g.dns) == 0 {
		g.dns, g.dnsNote = routedDNS(nil, readResolvConf())
	}
	g.notice("routed: the guest gets %s (leased from %s with client-id vmrun-%s, for %s)", g.ip, l.ServerID, p.Name, l.LeaseTime)
	return nil
}

// release gives the upstream lease back.
func (g *routedGuest) release() error {
	ip := g.client.Lease().IP
	if err := g.client.Release(); err != nil {
		return err
	}
	if ip != nil {
		g.event("routed: released the lease of %s", ip)
	}
	return nil
}

// readResolvConf returns the host's resolv.conf ("" when unreadable).
func readResolvConf() string {
	b, err := os.ReadFile(resolvConf)
	if err != nil {
		return ""
	}
	return string(b)
}

// addHostAddrs puts vmrun's end of the link on the tap: 169.254.0.1/32,
// and fe80::1/64 without duplicate address detection (skipped when IPv6
// is disabled on the host).
func (g *routedGuest) addHostAddrs(s *setup) error {
	v4 := &net.IPNet{IP: net.ParseIP(RoutedGateway).To4(), Mask: net.CIDRMask(32, 32)}
	if err := g.addAddr(s, &netlink.Addr{IPNet: v4, Scope: unix.RT_SCOPE_LINK}); err != nil {
		return err
	}
	v6 := &net.IPNet{IP: net.ParseIP(RoutedGatewayV6), Mask: net.CIDRMask(64, 128)}
	err := g.addAddr(s, &netlink.Addr{IPNet: v6, Flags: unix.IFA_F_NODAD})
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPERM) {
		g.event("routed: no IPv6 on %s (%v)", s.p.LinkName, err)
		return nil
	}
	g.tapV6 = err == nil
	return err
}

// addAddr records and adds one address to the tap.
func (g *routedGuest) addAddr(s *setup, a *netlink.Addr) error {
	obj, h, rec, tap := AddrObject(a.IPNet, s.p.LinkName), s.h, s.rec, s.link
	return addRecorded(s, obj, func() error { return h.AddrAdd(tap, a) }, func() error {
		return errors.Join(deleteAddr(h, obj), rec.Forget(obj))
	})
}

// addRecorded records obj, creates it with add and registers remove as
// its undo. An object that add could not create is forgotten again and
// not removed: it may be someone else's (EEXIST).
func addRecorded(s *setup, obj rundir.Object, add, remove func() error) error {
	if err := s.rec.Record(obj); err != nil {
		return err
	}
	if err := add(); err != nil {
		return errors.Join(err, s.rec.Forget(obj))
	}
	s.onUndo(remove)
	return nil
}

// routedSysctls are the sysctls routed mode sets, path → value: forwarding
// on the uplink and the tap (the kernel forwards what arrives on a device
// whose forwarding is on, and answers proxied ARP only then), and no
// delay for proxied ARP answers on the uplink. shared marks those of the
// uplink, which every routed guest on it needs.
func routedSysctls(uplink, tap string) []routedSysctl {
	return []routedSysctl{
		{path.Join("net/ipv4/conf", uplink, "forwarding"), "1", true},
		{path.Join("net/ipv4/neigh", uplink, "proxy_delay"), "0", true},
		{path.Join("net/ipv4/conf", tap, "forwarding"), "1", false},
	}
}

// routedSysctl is one sysctl routed mode sets: path under /proc/sys, the
// value, and whether every routed guest of the uplink needs it.
type routedSysctl struct {
	path, value string
	shared      bool
}

// enableForwarding sets routedSysctls.
func (g *routedGuest) enableForwarding(s *setup) error {
	return g.setSysctls(s, routedSysctls(s.p.Parent, s.p.LinkName))
}

// setSysctls sets each sysctl, recorded with its old value before it is
// changed, and restored by the undo.
func (g *routedGuest) setSysctls(s *setup, list []routedSysctl) error {
	for _, sc := range list {
		old, err := readSysctl(sc.path)
		if err != nil {
			return err
		}
		obj := SysctlObject(sc.path, old)
		if sc.shared {
			obj.Detail = map[string]string{sharedDevKey: s.p.Parent, tapKey: s.p.LinkName, netnsKey: g.ns.UniqueId()}
			if old == sc.value {
				inheritSysctl(s.rec, &obj)
			}
		}
		h, rec := s.h, s.rec
		err = addRecorded(s, obj, func() error { return writeSysctl(sc.path, sc.value) }, func() error {
			return errors.Join(g.inNS(func() error { return undoSysctl(h, obj) }), rec.Forget(obj))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readSysctl reads /proc/sys/path of the calling thread's namespace.
func readSysctl(p string) (string, error) {
	b, err := os.ReadFile(path.Join("/proc/sys", p))
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", p, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeSysctl writes /proc/sys/path of the calling thread's namespace.
func writeSysctl(p, value string) error {
	if err := os.WriteFile(path.Join("/proc/sys", p), []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", p, value, err)
	}
	return nil
}

// inheritSysctl handles a shared sysctl that already has the value routed
// mode needs: when another live VM under the same runtime root recorded
// it (same path, uplink and namespace), that VM changed it and will leave
// it set for this one, so this VM takes over the value to restore from
// that record. Without a runtime directory (rec is not a *rundir.Dir)
// there is nothing to look at.
func inheritSysctl(rec Recorder, obj *rundir.Object) {
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
				o.Detail[netnsKey] == obj.Detail[netnsKey] {
				obj.Old = o.Old
				return
			}
		}
	}
}

// undoSysctl restores a recorded sysctl, unless it is shared by the
// routed guests of a link (sharedDevKey) and another VM's is still there:
// then it is left as it is, for that guest.
func undoSysctl(h *netlink.Handle, o rundir.Object) error {
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
	return restoreSysctl(o.Name, o.Old)
}

// routedGuestsOn reports whether link dev still answers for a routed
// guest of vmrun other than the one behind link self: a proxy entry of the
// family on dev whose address is routed through a link carrying a vmrun
// alias (false when dev is gone). Proxy entries of others do not count:
// they are not vmrun's to keep.
func routedGuestsOn(h *netlink.Handle, dev, self string, family int) (bool, error) {
	l, err := h.LinkByName(dev)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	proxies, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighProxyList(l.Attrs().Index, family) })
	if err != nil {
		return false, fmt.Errorf("proxy entries on %s: %w", dev, err)
	}
	for _, n := range proxies {
		bits := 8 * len(n.IP.To16())
		if ip4 := n.IP.To4(); ip4 != nil {
			n.IP, bits = ip4, 32
		}
		dst := &net.IPNet{IP: n.IP, Mask: net.CIDRMask(bits, bits)}
		routes, err := retryDump(func() ([]netlink.Route, error) {
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

// hostRoute is the /32 of ip.
func hostRoute(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip.To16(), Mask: net.CIDRMask(128, 128)}
}

// addRoute routes the guest's address to the tap.
func (g *routedGuest) addRoute(s *setup) error {
	if err := routeGuest(s.h, s.rec, s.link, g.ip); err != nil {
		return err
	}
	s.onUndo(func() error { return unrouteGuest(g.s.h, g.s.rec, g.s.p.LinkName, g.guestIP()) })
	return nil
}

// routeGuest records and adds the /32 route to ip through tap.
func routeGuest(h *netlink.Handle, rec Recorder, tap netlink.Link, ip net.IP) error {
	dst := hostRoute(ip)
	obj := RouteObject(dst, tap.Attrs().Name)
	if err := rec.Record(obj); err != nil {
		return err
	}
	err := h.RouteAdd(&netlink.Route{LinkIndex: tap.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC})
	if errors.Is(err, unix.EEXIST) {
		err = refuse(ErrBadRequest, "this host already has a route to %s, so it cannot route that address to the guest; is another VM using it?", ip)
	}
	if err != nil {
		return errors.Join(err, rec.Forget(obj))
	}
	return nil
}

// unrouteGuest deletes the /32 route to ip through link tap and forgets it.
func unrouteGuest(h *netlink.Handle, rec Recorder, tap string, ip net.IP) error {
	obj := RouteObject(hostRoute(ip), tap)
	return errors.Join(deleteRoute(h, obj), rec.Forget(obj))
}

// addProxyARP makes the uplink answer ARP for the guest's address.
func (g *routedGuest) addProxyARP(s *setup) error {
	if err := proxyGuest(s.h, s.rec, s.parent, g.ip); err != nil {
		return err
	}
	s.onUndo(func() error { return unproxyGuest(g.s.h, g.s.rec, g.s.p.Parent, g.guestIP()) })
	return nil
}

// proxyGuest records and adds a proxy ARP entry for ip on uplink. An
// entry that is already there is someone else's: refused, left alone.
func proxyGuest(h *netlink.Handle, rec Recorder, uplink netlink.Link, ip net.IP) error {
	idx, name := uplink.Attrs().Index, uplink.Attrs().Name
	family, proto, nip := netlink.FAMILY_V4, "ARP", ip.To4()
	if nip == nil {
		family, proto, nip = netlink.FAMILY_V6, "NDP", ip.To16()
	}
	have, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighProxyList(idx, family) })
	if err != nil {
		return fmt.Errorf("proxy entries on %s: %w", name, err)
	}
	for _, n := range have {
		if n.IP.Equal(ip) {
			return refuse(ErrBadRequest, "%s already answers %s for %s (a proxy entry that is not this VM's): another VM or the administrator uses that address; give the guest another one", name, proto, ip)
		}
	}
	obj := NeighObject(ip, name, true)
	if err := rec.Record(obj); err != nil {
		return err
	}
	err = h.NeighAdd(&netlink.Neigh{LinkIndex: idx, Family: family, Flags: netlink.NTF_PROXY, IP: nip})
	if err != nil {
		return errors.Join(fmt.Errorf("proxy %s entry for %s on %s: %w", proto, ip, name, err), rec.Forget(obj))
	}
	return nil
}

// unproxyGuest deletes the proxy entry for ip on link uplink and forgets it.
func unproxyGuest(h *netlink.Handle, rec Recorder, uplink string, ip net.IP) error {
	obj := NeighObject(ip, uplink, true)
	return errors.Join(deleteNeigh(h, obj), rec.Forget(obj))
}

// startResponder answers the guest's DHCP on the tap with its address.
func (g *routedGuest) startResponder(s *setup) error {
	if g.dnsNote != "" {
		g.notice("%s", g.dnsNote)
	}
	b, err := g.serve(g.ip)
	if err != nil {
		return err
	}
	g.resp = b
	s.onUndo(func() error {
		g.mu.Lock()
		b := g.resp
		g.resp = nil
		g.mu.Unlock()
		if b != nil {
			b.cancel()
			g.stopping = append(g.stopping, b)
		}
		return nil
	})
	return nil
}

// serve opens a DHCP responder on the tap (in the calling thread's
// namespace) that hands the guest ip, and serves in the background.
func (g *routedGuest) serve(ip net.IP) (*background, error) {
	var up *dhcpupstream.Lease
	if g.client != nil {
		l := g.client.Lease()
		up = &l
	}
	srv, err := dhcpserve.New(dhcpserve.Config{
		Link: g.s.p.LinkName, ClientMAC: g.s.p.MAC,
		Lease: routedLease(ip, up, g.dns, g.s.att.MTU),
		Logf:  g.event,
		OnAck: func(ip net.IP) { g.event("routed: the guest took %s from vmrun's DHCP responder", ip) },
	})
	if err != nil {
		return nil, err
	}
	return goBackground(func(ctx context.Context) {
		if err := srv.Serve(ctx); err != nil {
			g.notice("routed: the DHCP responder for the guest stopped: %v", err)
		}
		_ = srv.Close()
	}), nil
}

// startKeeper keeps the upstream lease renewed until Undo.
func (g *routedGuest) startKeeper(s *setup) error {
	if g.client == nil {
		return nil
	}
	g.keeper = goBackground(func(ctx context.Context) { _ = g.client.Run(ctx, g.leaseChanged) })
	s.onUndo(func() error { g.keeper.stop(); return nil })
	return nil
}

// leaseChanged follows the upstream lease: a renewal changes nothing, a
// new address moves the guest's route and proxy entry to it and restarts
// the responder, whose NAK to the guest's next renewal makes the guest
// ask again and take the new address. It runs in the keeper's goroutine,
// which Undo stops before it removes the route and the proxy entry.
func (g *routedGuest) leaseChanged(l dhcpupstream.Lease) {
	old := g.guestIP()
	if l.IP.Equal(old) {
		g.event("routed: the lease of %s was extended by %s", l.IP, l.LeaseTime)
		return
	}
	if err := g.inNS(func() error { return g.move(old, l.IP.To4()) }); err != nil {
		g.notice("routed: the upstream lease moved the guest from %s to %s, but vmrun could not follow: %v", old, l.IP, err)
		return
	}
	g.notice("routed: the upstream lease moved the guest from %s to %s; the guest takes it at its next DHCP renewal", old, l.IP)
}

// move routes and answers for ip instead of old, with a responder that
// hands out ip.
func (g *routedGuest) move(old, ip net.IP) error {
	s := g.s
	tap, err := s.h.LinkByName(s.p.LinkName)
	if err != nil {
		return err
	}
	if err := routeGuest(s.h, s.rec, tap, ip); err != nil {
		return err
	}
	if err := proxyGuest(s.h, s.rec, s.parent, ip); err != nil {
		return errors.Join(err, unrouteGuest(s.h, s.rec, s.p.LinkName, ip))
	}
	b, err := g.serve(ip)
	if err != nil {
		return errors.Join(err, unproxyGuest(s.h, s.rec, s.p.Parent, ip), unrouteGuest(s.h, s.rec, s.p.LinkName, ip))
	}
	g.mu.Lock()
	prev := g.resp
	g.resp, g.ip = b, ip
	g.mu.Unlock()
	prev.stop()
	return errors.Join(unproxyGuest(s.h, s.rec, s.p.Parent, old), unrouteGuest(s.h, s.rec, s.p.LinkName, old))
}

// routedLease is what vmrun's responder hands a routed guest: its address
// as a /32, the router 169.254.0.1 (vmrun's end of the tap) and, because
// that router is off-link for a /32 and many clients then install no
// default route, option 121 with a host route to it and the default route
// through it. up is the upstream lease (nil for a static address).
func routedLease(ip net.IP, up *dhcpupstream.Lease, dns []net.IP, mtu int) dhcpserve.Lease {
	gw := net.ParseIP(RoutedGateway).To4()
	l := dhcpserve.Lease{
		IP: ip.To4(), Mask: net.CIDRMask(32, 32), Router: gw, ServerID: gw, DNS: dns,
		Routes: []dhcpserve.Route{
			{Dest: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Router: net.IPv4zero.To4()},
			{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: gw},
		},
		LeaseTime: guestLeaseTime(up),
	}
	if up != nil {
		l.Domain = up.Domain
	}
	if mtu > 0 && mtu != 1500 {
		l.MTU = mtu
	}
	return l
}

// Bounds of the guest's lease time.
const (
	maxGuestLease = time.Hour
	minGuestLease = 10 * time.Second
)

// guestLeaseTime is the lease time the guest gets: half the upstream
// lease's, so the guest learns of a changed address before the upstream
// lease could run out, at most an hour (an hour for a static address).
func guestLeaseTime(up *dhcpupstream.Lease) time.Duration {
	if up == nil || up.LeaseTime <= 0 {
		return maxGuestLease
	}
	return min(max(up.LeaseTime/2, minGuestLease), maxGuestLease)
}

// routedDNS chooses the DNS servers for a routed guest: the upstream
// lease's, else the nameservers of resolvConf (the content of
// /etc/resolv.conf) the guest can reach: IPv4, not loopback. note says why
// the guest gets none, when it gets none.
func routedDNS(leased []net.IP, resolvConf string) (dns []net.IP, note string) {
	var stubs []string
	usable := func(ip net.IP) bool {
		switch {
		case ip.To4() == nil || ip.IsUnspecified():
			return false
		case ip.IsLoopback():
			stubs = append(stubs, ip.String())
			return false
		}
		return true
	}
	for _, ip := range leased {
		if usable(ip) {
			dns = append(dns, ip.To4())
		}
	}
	if len(dns) > 0 {
		return dns, ""
	}
	for _, line := range strings.Split(resolvConf, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if ip := net.ParseIP(f[1]); ip != nil && usable(ip) {
			dns = append(dns, ip.To4())
		}
	}
	switch {
	case len(dns) > 0:
		return dns, ""
	case len(stubs) > 0:
		return nil, fmt.Sprintf("routed: this host's only DNS resolver is %s, a local stub the guest cannot reach, so vmrun hands the guest no DNS server; configure one inside the guest", strings.Join(stubs, ", "))
	default:
		return nil, "routed: neither the upstream lease nor /etc/resolv.conf names a DNS server, so vmrun hands the guest none; configure one inside the guest"
	}
}
