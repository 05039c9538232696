package routed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/service"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// IPv6 in routed mode. The guest shares the uplink's global /64 prefixes:
// vmrun advertises them on the tap (router fe80::1, prefixes not on-link,
// so the guest sends everything to vmrun), the guest forms its addresses
// by SLAAC, and vmrun learns each one from the guest's duplicate address
// detection (or any ICMPv6 packet from it), then routes it to the tap
// (/128) and answers neighbour solicitations for it on the uplink (a proxy
// NDP entry). It needs IPv6 forwarding, which is host-wide: vmrun turns it
// on, and first sets the uplink's accept_ra to 2 if it was 1, so that the
// host keeps its own router advertisements (and default route) there.
// Every sysctl is recorded and restored like the IPv4 ones.

// raInterval is how often vmrun advertises the prefixes unsolicited; the
// guest's router solicitations are answered at once.
const raInterval = 30 * time.Second

// routed6 is the IPv6 state of a routed guest.
type routed6 struct {
	prefixes []netip.Prefix
	host     map[netip.Addr]bool // the uplink's own addresses: never the guest's
	known    map[netip.Addr]bool // guest addresses routed and proxied (under routedGuest.mu)
	closed   bool                // Undo has begun: learn no more (under routedGuest.mu)
}

// uplinkPrefixes6 returns the global /64 prefixes of link's IPv6
// addresses, and the addresses themselves.
func uplinkPrefixes6(h *netlink.Handle, link netlink.Link) ([]netip.Prefix, map[netip.Addr]bool, error) {
	addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V6) })
	if err != nil {
		return nil, nil, fmt.Errorf("IPv6 addresses of %s: %w", link.Attrs().Name, err)
	}
	seen := map[netip.Prefix]bool{}
	own := map[netip.Addr]bool{}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To16())
		if !ok {
			continue
		}
		own[ip] = true
		ones, bits := a.Mask.Size()
		if a.Scope != unix.RT_SCOPE_UNIVERSE || ones != 64 || bits != 128 || !ip.IsGlobalUnicast() {
			continue
		}
		p := netip.PrefixFrom(ip, 64).Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out, own, nil
}

// routedSysctls6 are the IPv6 sysctls routed mode sets when it shares a
// prefix: accept_ra 2 on the uplink (only if it is 1 now: forwarding
// would make the kernel ignore the uplink's router advertisements and drop
// its default route learnt from them), forwarding, proxy NDP and no
// proxy delay on the uplink. All are shared by the routed guests of the
// uplink.
func routedSysctls6(uplink, acceptRA string) []hostnet.Sysctl {
	var out []hostnet.Sysctl
	if acceptRA == "1" {
		out = append(out, hostnet.Sysctl{Path: path.Join("net/ipv6/conf", uplink, "accept_ra"), Value: "2", Shared: true})
	}
	return append(out,
		hostnet.Sysctl{Path: "net/ipv6/conf/all/forwarding", Value: "1", Shared: true},
		hostnet.Sysctl{Path: path.Join("net/ipv6/conf", uplink, "proxy_ndp"), Value: "1", Shared: true},
		hostnet.Sysctl{Path: path.Join("net/ipv6/neigh", uplink, "proxy_delay"), Value: "0", Shared: true},
	)
}

// startIPv6 shares the uplink's IPv6 prefixes with the guest (see the top
// of this file). Without IPv6 on the tap or a global /64 on the uplink it
// changes nothing: the guest gets IPv4 only, and vmrun says why.
func (g *routedGuest) startIPv6(s *hostnet.Setup) error {
	if !g.tapV6 {
		return nil
	}
	prefixes, own, err := uplinkPrefixes6(s.H, s.ParentLink)
	if err != nil {
		return err
	}
	if len(prefixes) == 0 {
		g.event("routed: IPv4 only: %s has no global IPv6 /64 to share with the guest", s.Cfg.Parent)
		return nil
	}
	acceptRA, err := hostnet.ReadSysctl(path.Join("net/ipv6/conf", s.Cfg.Parent, "accept_ra"))
	if err != nil {
		return err
	}
	if err := s.SetSysctls(routedSysctls6(s.Cfg.Parent, acceptRA), g.ns.UniqueId(), g.inNS); err != nil {
		return err
	}
	g.v6 = &routed6{prefixes: prefixes, host: own, known: map[netip.Addr]bool{}}
	idx := s.Link.Attrs().Index
	// Named by its index: ndp names the interface as the zone of fe80::1,
	// and the net package resolves zone names through a process-wide
	// cache, blind to namespaces and up to a minute stale — a tap of the
	// same name made again (a restarted VM, another namespace) would be
	// looked up by its old index (ENODEV). A numeric zone is the index.
	ifi := &net.Interface{Index: idx, Name: strconv.Itoa(idx), MTU: max(s.Att.MTU, 1280), HardwareAddr: hostnet.HostSideMAC(s.Cfg.MAC)}
	adv, learn, err := g.startIPv6Services(s, ifi)
	if err != nil {
		return err
	}
	s.OnUndo(func() error {
		adv.Cancel()
		learn.Cancel()
		g.stopping = append(g.stopping, adv, learn)
		g.mu.Lock()
		var addrs []netip.Addr
		for a, routed := range g.v6.known {
			if routed {
				addrs = append(addrs, a)
			}
		}
		g.v6.known, g.v6.closed = map[netip.Addr]bool{}, true
		g.mu.Unlock()
		var errs []error
		for _, a := range addrs {
			ip := net.IP(a.AsSlice())
			errs = append(errs, unproxyGuest(g.s.H, g.s.Rec, g.s.Cfg.Parent, ip), unrouteGuest(g.s.H, g.s.Rec, g.s.Cfg.LinkName, ip))
		}
		return errors.Join(errs...)
	})
	list := make([]string, len(prefixes))
	for i, p := range prefixes {
		list[i] = p.String()
	}
	g.event("routed: advertising %v to the guest (router %s); its IPv6 addresses are routed as it takes them", list, GatewayV6)
	return nil
}

// startIPv6Services starts the router advertiser and the learner of the
// guest's IPv6 addresses on the tap ifi.
func (g *routedGuest) startIPv6Services(s *hostnet.Setup, ifi *net.Interface) (adv, learn *service.Handle, err error) {
	msg := g.advertisement(ifi.HardwareAddr, s.Att.MTU)
	adv, err = s.GoReopening(hostnet.ServiceRA, hostnet.RAPolicy, func() (func(context.Context) error, error) {
		ra, err := openAdvertiser(ifi, s.Cfg.LinkName)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return g.advertise(ctx, ra, msg) }, nil
	})
	if err != nil {
		return nil, nil, err
	}
	prog, err := bpf.Assemble(icmp6Filter())
	if err != nil {
		adv.Stop()
		return nil, nil, err
	}
	learn, err = s.GoReopening(hostnet.ServiceLearn6, hostnet.Learn6Policy, func() (func(context.Context) error, error) {
		lc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeIPv6), &packet.Config{Filter: prog})
		if err != nil {
			return nil, fmt.Errorf("packet socket on %s: %w", s.Cfg.LinkName, err)
		}
		return func(ctx context.Context) error { return g.learn6(ctx, lc) }, nil
	})
	if err != nil {
		adv.Stop()
		return nil, nil, err
	}
	return adv, learn, nil
}

// openAdvertiser opens an ICMPv6 socket on the tap's fe80::1, joined to
// all-routers (the guest's router solicitations).
func openAdvertiser(tap *net.Interface, name string) (*ndp.Conn, error) {
	c, _, err := ndp.Listen(tap, ndp.LinkLocal) // reads into tap.MTU bytes
	if err != nil {
		return nil, fmt.Errorf("ICMPv6 socket on %s: %w", name, err)
	}
	if err := c.JoinGroup(netip.MustParseAddr("ff02::2")); err != nil {
		c.Close()
		return nil, fmt.Errorf("join all-routers on %s: %w", name, err)
	}
	return c, nil
}

// advertisement is the router advertisement vmrun sends the guest.
func (g *routedGuest) advertisement(mac net.HardwareAddr, mtu int) *ndp.RouterAdvertisement {
	ra := &ndp.RouterAdvertisement{CurrentHopLimit: 64, RouterLifetime: 30 * time.Minute}
	for _, p := range g.v6.prefixes {
		ra.Options = append(ra.Options, &ndp.PrefixInformation{
			PrefixLength: 64, OnLink: false, AutonomousAddressConfiguration: true,
			ValidLifetime: 24 * time.Hour, PreferredLifetime: 4 * time.Hour, Prefix: p.Addr(),
		})
	}
	ra.Options = append(ra.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac})
	if mtu >= 1280 {
		ra.Options = append(ra.Options, ndp.NewMTU(uint32(mtu)))
	}
	return ra
}

// advertise sends ra to all nodes at once, every raInterval and in answer
// to a router solicitation, until ctx ends.
func (g *routedGuest) advertise(ctx context.Context, c *ndp.Conn, ra *ndp.RouterAdvertisement) error {
	defer closeWith(ctx, c.Close)()
	all := netip.IPv6LinkLocalAllNodes()
	send := func() { _ = c.WriteTo(ra, nil, all) } // fails while the tap has no carrier (QEMU not attached yet)
	send()
	next := time.Now().Add(raInterval)
	for {
		if err := c.SetReadDeadline(next); err != nil {
			return fmt.Errorf("router advertisements: %w", err)
		}
		m, _, _, err := c.ReadFrom()
		if ctx.Err() != nil {
			return nil
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			send()
			next = time.Now().Add(raInterval)
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("router advertisements: %w", err)
		case err != nil:
			// A malformed message, or the tap went down for a moment.
		default:
			if _, ok := m.(*ndp.RouterSolicitation); ok {
				send()
			}
		}
	}
}

// closeWith closes a service's socket when ctx ends (which wakes a read
// blocked on it) and returns the function that closes it, once, when the
// service returns.
func closeWith(ctx context.Context, closeFn func() error) func() {
	stop := context.AfterFunc(ctx, func() { _ = closeFn() })
	return func() {
		if stop() {
			_ = closeFn()
		}
	}
}

// icmp6Filter passes ICMPv6 packets (next header 58 in the IPv6 header
// after the Ethernet header): duplicate address detection and neighbour
// discovery tell the guest's addresses; the rest of its traffic is not
// copied to vmrun.
func icmp6Filter() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 14 + 6, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: learn.IPv6ICMP, SkipFalse: 1},
		bpf.RetConstant{Val: 256},
		bpf.RetConstant{Val: 0},
	}
}

// learn6 reads the guest's ICMPv6 packets on the tap and routes every
// address of the advertised prefixes it uses, until ctx ends.
func (g *routedGuest) learn6(ctx context.Context, c *packet.Conn) error {
	defer closeWith(ctx, c.Close)()
	err := learn.ReadFrames(c, make([]byte, 512), ctx.Done(), func(frame []byte) {
		if ev, ok := learn.GuestAddrEvent(frame, g.s.Cfg.MAC); ok && !ev.Drop && ev.Addr.Is6() {
			g.addGuest6(ev.Addr, ev.Why)
		}
	})
	if err != nil {
		return fmt.Errorf("reading the guest's ICMPv6: %w", err)
	}
	return nil
}

// addGuest6 routes a to the guest and proxies it on the uplink, once, if
// it is in an advertised prefix and not the host's.
func (g *routedGuest) addGuest6(a netip.Addr, why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := g.v6
	if _, seen := v.known[a]; seen || v.closed || !v.inPrefixes(a) {
		return
	}
	if v.host[a] {
		g.notice("routed: the guest uses %s, which is %s's own address: not routed to the guest", a, g.s.Cfg.Parent)
		v.known[a] = false
		return
	}
	ip := net.IP(a.AsSlice())
	if err := routeGuest(g.s.H, g.s.Rec, g.s.Link, ip); err != nil {
		g.notice("routed: the guest's IPv6 address %s cannot be routed to it: %v", a, err)
		return
	}
	if err := proxyGuest(g.s.H, g.s.Rec, g.s.ParentLink, ip); err != nil {
		g.notice("routed: the guest's IPv6 address %s cannot be answered for on %s: %v", a, g.s.Cfg.Parent, errors.Join(err, unrouteGuest(g.s.H, g.s.Rec, g.s.Cfg.LinkName, ip)))
		return
	}
	v.known[a] = true
	g.notice("routed: the guest's IPv6 address %s is routed to it (learnt from %s)", a, why)
	g.s.Trace.ReportAddr(hostnet.GuestAddr{Addr: a, Source: learn.SourceOf(why)})
}

func (v *routed6) inPrefixes(a netip.Addr) bool {
	for _, p := range v.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
