package routed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
	"github.com/vmrun/vmrun/internal/dnsforward"
	"github.com/vmrun/vmrun/internal/service"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
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
func routedSteps(g *routedGuest) []hostnet.Step {
	steps := []hostnet.Step{
		{Name: "uplink", Do: g.lookupUplink},
		{Name: "guest address", Do: g.takeAddress},
	}
	steps = append(steps, hostnet.TapLinkSteps()...)
	return append(steps, []hostnet.Step{
		{Name: "up", Do: (*hostnet.Setup).SetUp},
		{Name: "host addresses", Do: g.addHostAddrs},
		{Name: "route", Do: g.addRoute},
		{Name: "proxy arp", Do: g.addProxyARP},
		{Name: "forwarding", Do: g.enableForwarding},
		{Name: "dhcp responder", Do: g.startResponder},
		{Name: "ipv6", Do: g.startIPv6},
		{Name: "lease keeper", Do: g.startKeeper},
		{Name: "open vhost", Do: (*hostnet.Setup).OpenVhost},
	}...)
}

// Config is what routed mode needs of a plan.
type Config struct {
	Link hostnet.LinkConfig // Parent is the uplink
	Caps []int              // the capabilities to raise (internal/caps numbers)
	// GuestIP is the guest's static address (--guest-ip); nil: vmrun
	// leases one from the uplink's DHCP server on the guest's behalf.
	GuestIP net.IP
}

// Attach carries out the routed set-up (see hostnet.Run).
func (c Config) Attach(ctx context.Context, rec hostnet.Recorder) (*hostnet.Attachment, error) {
	g := &routedGuest{cfg: c}
	// The tap's MAC is the kernel's until the "host mac" step.
	obj := hostnet.LinkObject(c.Link.VM, c.Link.LinkName, "tuntap", nil)
	return hostnet.Run(ctx, c.Link, rec, obj, c.Caps, routedSteps(g))
}

// routedGuest is the state of one routed attachment: what Apply's steps
// learn, and the background services that outlive Apply until Undo.
type routedGuest struct {
	cfg Config         // what it carries out
	s   *hostnet.Setup // the Apply that made it (its handle, recorder, trace)
	ns  netns.NsHandle // the network namespace Apply ran in

	client  *dhcpupstream.Client // the upstream lease; nil for a static address
	dns     []net.IP
	dnsNote string

	keeper *service.Handle // renews the upstream lease

	mu   sync.Mutex
	ip   net.IP          // the guest's address, as routed now
	resp *service.Handle // the DHCP responder on the tap
	// What the keeper's last lease change did (leaseChanged): the lease's
	// request time, the error of following it, and a channel closed then.
	changedAt time.Time
	changeErr error
	changed   chan struct{}

	stopping []*service.Handle // cancelled by Undo, waited for after the tap is gone

	tapV6 bool     // the tap has fe80::1 (IPv6 is enabled)
	v6    *routed6 // the shared IPv6 prefixes; nil when the guest has IPv4 only
}

// inNS runs fn in the namespace Apply ran in (see hostnet.InNS).
func (g *routedGuest) inNS(fn func() error) error { return hostnet.InNS(g.ns, fn) }

func (g *routedGuest) event(format string, args ...any) {
	g.s.Trace.ReportEvent(fmt.Sprintf(format, args...))
}

func (g *routedGuest) notice(format string, args ...any) {
	g.s.Trace.ReportNotice(fmt.Sprintf(format, args...))
}

// guestIP returns the guest's current address.
func (g *routedGuest) guestIP() net.IP {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ip
}

// lookupUplink finds the uplink, checks that packet sockets can be opened
// and remembers the namespace.
func (g *routedGuest) lookupUplink(s *hostnet.Setup) error {
	g.s = s
	if err := s.LookupParent(); err != nil {
		return err
	}
	if len(s.ParentLink.Attrs().HardwareAddr) != 6 {
		return hostnet.Refuse(hostnet.ErrUnsuitable, "%s has no Ethernet address, and routed mode answers ARP for the guest on it; choose an Ethernet or Wi-Fi interface with --net routed:IF", s.Cfg.Parent)
	}
	if !caps.Usable(unix.CAP_NET_RAW) {
		return hostnet.Refuse(hostnet.ErrNoPrivilege, "--net routed answers the guest's DHCP and leases its address through packet sockets, which need CAP_NET_RAW; run vmrun as root")
	}
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	g.ns = ns
	s.OnUndo(ns.Close)
	// Runs after the tap's deletion: the responder's packet socket closes
	// (an RCU grace period in the kernel) while the tap is deleted (more of
	// them) instead of before it.
	s.OnUndo(func() error {
		for _, b := range g.stopping {
			b.Wait()
		}
		g.stopping = nil
		return nil
	})
	return nil
}

// takeAddress settles the guest's address: the static one, or a lease
// taken from the uplink's DHCP server with the VM's own client identifier
// (released again by the undo).
func (g *routedGuest) takeAddress(s *hostnet.Setup) error {
	p := g.cfg.Link
	if g.cfg.GuestIP != nil {
		g.ip = g.cfg.GuestIP.To4()
		g.dns, g.dnsNote = routedDNS(nil, readResolvConf())
		g.notice("routed: the guest gets %s (--guest-ip; no lease is taken for it) on %s's LAN", g.ip, p.Parent)
		return nil
	}
	c, err := dhcpupstream.Acquire(s.Ctx, dhcpupstream.Config{
		Link: p.Parent, ClientID: dhcpupstream.VMClientID(p.VM), Hostname: p.VM,
		Logf: g.event,
	})
	if err != nil {
		if cerr := s.Ctx.Err(); cerr != nil {
			return cerr
		}
		return hostnet.Refuse(hostnet.ErrNoLease, "no DHCP server on %s gave the guest an address (%v); give it one with --guest-ip ADDRESS, or check %s's network", p.Parent, err, p.Parent)
	}
	g.client = c
	s.OnUndo(g.release)
	l := c.Lease()
	g.ip = l.IP.To4()
	g.dns, g.dnsNote = routedDNS(l.DNS, "")
	if len(g.dns) == 0 {
		g.dns, g.dnsNote = routedDNS(nil, readResolvConf())
	}
	g.notice("routed: the guest gets %s (leased from %s with client-id vmrun-%s, for %s)", g.ip, l.ServerID, p.VM, l.LeaseTime)
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
func (g *routedGuest) addHostAddrs(s *hostnet.Setup) error {
	v4 := &net.IPNet{IP: net.ParseIP(Gateway).To4(), Mask: net.CIDRMask(32, 32)}
	if err := g.addAddr(s, &netlink.Addr{IPNet: v4, Scope: unix.RT_SCOPE_LINK}); err != nil {
		return err
	}
	v6 := &net.IPNet{IP: net.ParseIP(GatewayV6), Mask: net.CIDRMask(64, 128)}
	err := g.addAddr(s, &netlink.Addr{IPNet: v6, Flags: unix.IFA_F_NODAD})
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPERM) {
		g.event("routed: no IPv6 on %s (%v)", s.Cfg.LinkName, err)
		return nil
	}
	g.tapV6 = err == nil
	return err
}

// addAddr records and adds one address to the tap.
func (g *routedGuest) addAddr(s *hostnet.Setup, a *netlink.Addr) error {
	obj, h, rec, tap := hostnet.AddrObject(a.IPNet, s.Cfg.LinkName), s.H, s.Rec, s.Link
	return s.AddRecorded(obj, func() error { return h.AddrAdd(tap, a) }, func() error {
		return errors.Join(hostnet.DeleteAddr(h, obj), rec.Forget(obj))
	})
}

// routedSysctls are the sysctls routed mode sets, path → value: forwarding
// on the uplink and the tap (the kernel forwards what arrives on a device
// whose forwarding is on, and answers proxied ARP only then), and no
// delay for proxied ARP answers on the uplink. shared marks those of the
// uplink, which every routed guest on it needs.
func routedSysctls(uplink, tap string) []hostnet.Sysctl {
	return []hostnet.Sysctl{
		{Path: path.Join("net/ipv4/conf", uplink, "forwarding"), Value: "1", Shared: true},
		{Path: path.Join("net/ipv4/neigh", uplink, "proxy_delay"), Value: "0", Shared: true},
		{Path: path.Join("net/ipv4/conf", tap, "forwarding"), Value: "1", Shared: false},
	}
}

// enableForwarding sets routedSysctls.
func (g *routedGuest) enableForwarding(s *hostnet.Setup) error {
	return s.SetSysctls(routedSysctls(s.Cfg.Parent, s.Cfg.LinkName), g.ns.UniqueId(), g.inNS)
}

// hostRoute is the /32 of ip.
func hostRoute(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip.To16(), Mask: net.CIDRMask(128, 128)}
}

// addRoute routes the guest's address to the tap.
func (g *routedGuest) addRoute(s *hostnet.Setup) error {
	if err := routeGuest(s.H, s.Rec, s.Link, g.ip); err != nil {
		return err
	}
	s.OnUndo(func() error { return unrouteGuest(g.s.H, g.s.Rec, g.s.Cfg.LinkName, g.guestIP()) })
	return nil
}

// routeGuest records and adds the /32 route to ip through tap.
func routeGuest(h *netlink.Handle, rec hostnet.Recorder, tap netlink.Link, ip net.IP) error {
	dst := hostRoute(ip)
	obj := hostnet.RouteObject(dst, tap.Attrs().Name)
	if err := rec.Record(obj); err != nil {
		return err
	}
	err := h.RouteAdd(&netlink.Route{LinkIndex: tap.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC})
	if errors.Is(err, unix.EEXIST) {
		err = hostnet.Refuse(hostnet.ErrBadRequest, "this host already has a route to %s, so it cannot route that address to the guest; is another VM using it?", ip)
	}
	if err != nil {
		return errors.Join(err, rec.Forget(obj))
	}
	return nil
}

// unrouteGuest deletes the /32 route to ip through link tap and forgets it.
func unrouteGuest(h *netlink.Handle, rec hostnet.Recorder, tap string, ip net.IP) error {
	obj := hostnet.RouteObject(hostRoute(ip), tap)
	return errors.Join(hostnet.DeleteRoute(h, obj), rec.Forget(obj))
}

// addProxyARP makes the uplink answer ARP for the guest's address.
func (g *routedGuest) addProxyARP(s *hostnet.Setup) error {
	if err := proxyGuest(s.H, s.Rec, s.ParentLink, g.ip); err != nil {
		return err
	}
	s.OnUndo(func() error { return unproxyGuest(g.s.H, g.s.Rec, g.s.Cfg.Parent, g.guestIP()) })
	return nil
}

// proxyGuest records and adds a proxy ARP entry for ip on uplink. An
// entry that is already there is someone else's: refused, left alone.
func proxyGuest(h *netlink.Handle, rec hostnet.Recorder, uplink netlink.Link, ip net.IP) error {
	idx, name := uplink.Attrs().Index, uplink.Attrs().Name
	family, proto, nip := netlink.FAMILY_V4, "ARP", ip.To4()
	if nip == nil {
		family, proto, nip = netlink.FAMILY_V6, "NDP", ip.To16()
	}
	have, err := hostnet.RetryDump(func() ([]netlink.Neigh, error) { return h.NeighProxyList(idx, family) })
	if err != nil {
		return fmt.Errorf("proxy entries on %s: %w", name, err)
	}
	for _, n := range have {
		if n.IP.Equal(ip) {
			return hostnet.Refuse(hostnet.ErrBadRequest, "%s already answers %s for %s (a proxy entry that is not this VM's): another VM or the administrator uses that address; give the guest another one", name, proto, ip)
		}
	}
	obj := hostnet.NeighObject(ip, name, true)
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
func unproxyGuest(h *netlink.Handle, rec hostnet.Recorder, uplink string, ip net.IP) error {
	obj := hostnet.NeighObject(ip, uplink, true)
	return errors.Join(hostnet.DeleteNeigh(h, obj), rec.Forget(obj))
}

// reproxyGuest puts back the proxy entry for ip on the uplink (still in
// the record) when the kernel has flushed it.
func reproxyGuest(h *netlink.Handle, uplink netlink.Link, ip net.IP) error {
	err := h.NeighSet(&netlink.Neigh{LinkIndex: uplink.Attrs().Index, Family: netlink.FAMILY_V4, Flags: netlink.NTF_PROXY, IP: ip.To4()})
	if err != nil {
		return fmt.Errorf("proxy ARP entry for %s on %s: %w", ip, uplink.Attrs().Name, err)
	}
	return nil
}

// startResponder answers the guest's DHCP on the tap with its address.
func (g *routedGuest) startResponder(s *hostnet.Setup) error {
	if g.dnsNote != "" {
		g.notice("%s", g.dnsNote)
	}
	b, err := g.serve(g.ip)
	if err != nil {
		return err
	}
	g.resp = b
	s.OnUndo(func() error {
		g.mu.Lock()
		b := g.resp
		g.resp = nil
		g.mu.Unlock()
		if b != nil {
			b.Cancel()
			g.stopping = append(g.stopping, b)
		}
		return nil
	})
	return nil
}

// serve opens a DHCP responder on the tap (in the calling thread's
// namespace) that hands the guest ip, and serves in the background.
func (g *routedGuest) serve(ip net.IP) (*service.Handle, error) {
	var up *dhcpupstream.Lease
	if g.client != nil {
		l := g.client.Lease()
		up = &l
	}
	cfg := dhcpserve.Config{
		Link: g.s.Cfg.LinkName, ClientMAC: g.s.Cfg.MAC,
		Lease: routedLease(ip, up, g.dns, g.s.Att.MTU),
		Logf:  g.event,
	}
	cfg.OnAck = func(ip net.IP) {
		g.event("routed: the guest took %s from vmrun's DHCP responder", ip)
		g.s.Trace.ReportAck(cfg.Lease.ServerID, ip)
	}
	return g.s.GoReopening(hostnet.ServiceDHCP, hostnet.DHCPPolicy, hostnet.OpenResponder(cfg))
}

// startKeeper keeps the upstream lease renewed until Undo.
func (g *routedGuest) startKeeper(s *hostnet.Setup) error {
	if g.client == nil {
		return nil
	}
	g.changed = make(chan struct{})
	g.keeper = s.Services().Go(hostnet.ServiceKeeper, hostnet.KeeperPolicy, func(ctx context.Context) error { return g.client.Run(ctx, g.leaseChanged) })
	s.OnUndo(func() error { g.keeper.Stop(); return nil })
	s.Att.Reregister = g.reregister
	return nil
}

// reregister takes the upstream lease anew for a new LAN behind the same
// uplink (Attachment.Reregister): the keeper forgets its lease and
// acquires one at once (dhcpupstream.Client.Reacquire), and leaseChanged
// moves the guest's route, proxy entry and responder to its address. It
// returns once that is done, or when ctx ends (the keeper keeps asking
// then, every 10 s, and follows the lease when one comes).
func (g *routedGuest) reregister(ctx context.Context) (string, error) {
	asked := time.Now()
	g.client.Reacquire()
	for {
		g.mu.Lock()
		at, err, ip, changed := g.changedAt, g.changeErr, g.ip, g.changed
		g.mu.Unlock()
		if at.After(asked) {
			if err != nil {
				return "", err
			}
			l := g.client.Lease()
			return fmt.Sprintf("the guest gets %s (leased from %s for %s)", ip, l.ServerID, l.LeaseTime), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("no DHCP server on %s gave the guest a new lease yet (%w); vmrun keeps asking, and the guest takes the new address at its next renewal", g.cfg.Link.Parent, context.Cause(ctx))
		}
	}
}

// leaseChanged follows the upstream lease: a renewal changes nothing, a
// new address moves the guest's route and proxy entry to it and restarts
// the responder, whose NAK to the guest's next renewal makes the guest
// ask again and take the new address. It runs in the keeper's goroutine,
// which Undo stops before it removes the route and the proxy entry.
func (g *routedGuest) leaseChanged(l dhcpupstream.Lease) {
	var err error
	defer func() {
		g.mu.Lock()
		g.changedAt, g.changeErr = l.Acquired, err
		close(g.changed)
		g.changed = make(chan struct{})
		g.mu.Unlock()
	}()
	old := g.guestIP()
	if l.IP.Equal(old) {
		g.event("routed: the lease of %s was extended by %s", l.IP, l.LeaseTime)
		// The uplink's carrier loss flushed its proxy entries (the
		// kernel's neigh_carrier_down): answer for the guest again.
		if err = g.inNS(func() error { return reproxyGuest(g.s.H, g.s.ParentLink, old) }); err != nil {
			g.notice("routed: %v", err)
		}
		return
	}
	if err = g.inNS(func() error { return g.move(old, l.IP.To4()) }); err != nil {
		err = fmt.Errorf("the upstream lease moved the guest from %s to %s, but vmrun could not follow: %w", old, l.IP, err)
		g.notice("routed: %v", err)
		return
	}
	g.notice("routed: the upstream lease moved the guest from %s to %s; the guest takes it at its next DHCP renewal", old, l.IP)
}

// move routes and answers for ip instead of old, with a responder that
// hands out ip.
func (g *routedGuest) move(old, ip net.IP) error {
	s := g.s
	tap, err := s.H.LinkByName(s.Cfg.LinkName)
	if err != nil {
		return err
	}
	if err := routeGuest(s.H, s.Rec, tap, ip); err != nil {
		return err
	}
	if err := proxyGuest(s.H, s.Rec, s.ParentLink, ip); err != nil {
		return errors.Join(err, unrouteGuest(s.H, s.Rec, s.Cfg.LinkName, ip))
	}
	b, err := g.serve(ip)
	if err != nil {
		return errors.Join(err, unproxyGuest(s.H, s.Rec, s.Cfg.Parent, ip), unrouteGuest(s.H, s.Rec, s.Cfg.LinkName, ip))
	}
	g.mu.Lock()
	prev := g.resp
	g.resp, g.ip = b, ip
	g.mu.Unlock()
	prev.Stop()
	return errors.Join(unproxyGuest(s.H, s.Rec, s.Cfg.Parent, old), unrouteGuest(s.H, s.Rec, s.Cfg.LinkName, old))
}

// routedLease is what vmrun's responder hands a routed guest: its address
// as a /32, the router 169.254.0.1 (vmrun's end of the tap) and, because
// that router is off-link for a /32 and many clients then install no
// default route, option 121 with a host route to it and the default route
// through it. up is the upstream lease (nil for a static address).
func routedLease(ip net.IP, up *dhcpupstream.Lease, dns []net.IP, mtu int) dhcpserve.Lease {
	gw := net.ParseIP(Gateway).To4()
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
	for _, a := range dnsforward.Nameservers(resolvConf) {
		if ip := net.IP(a.AsSlice()); usable(ip) {
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
