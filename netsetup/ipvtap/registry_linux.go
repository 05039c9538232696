package ipvtap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
	"golang.org/x/sys/unix"
)

// registerStatic registers --guest-ip at once, unless it is the host's
// or a gateway's address. The facts read for the check serve the rest of
// the registration (setupFacts).
func (x *guest) registerStatic(s *hostnet.Setup) error {
	if x.guestIP == nil {
		return nil
	}
	a, ok := netip.AddrFromSlice(x.guestIP)
	if !ok {
		return hostnet.Refuse(hostnet.ErrBadRequest, "--guest-ip %s is not an IP address", x.guestIP)
	}
	f := x.hostFacts()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.setupFacts = &f
	defer func() { x.setupFacts = nil }()
	switch x.policy().Check(a.Unmap()) {
	case learn.AddrHost, learn.AddrHostLinkLoc:
		return hostnet.Refuse(hostnet.ErrBadRequest, "--guest-ip %s is %s's own address; give the guest an address of its own", a, x.parent)
	case learn.AddrGateway:
		return hostnet.Refuse(hostnet.ErrBadRequest, "--guest-ip %s is the gateway's address; give the guest an address of its own", a)
	}
	return x.registerLocked(a.Unmap(), "--guest-ip")
}

// policy collects the addresses never to register: the host's own, and
// the gateways of the routes through the parent (and --gateway). While
// --guest-ip is registered, the answer read for its check is used again
// (setupFacts): each is two netlink dumps.
func (x *guest) policy() learn.Policy {
	if x.setupFacts != nil {
		return x.setupFacts.pol
	}
	return x.hostFacts().pol
}

// facts are what vmrun's namespace says about the parent: the policy,
// and the host's first global IPv4 address on the parent (the source of
// its packets to the guest; nil for none).
type facts struct {
	pol    learn.Policy
	hostV4 net.IP
}

// hostFacts reads the facts: a dump of the addresses and one of the routes.
func (x *guest) hostFacts() facts {
	f := facts{pol: learn.Policy{Host: map[netip.Addr]bool{}, Gateways: map[netip.Addr]bool{}}}
	p := f.pol
	add := func(m map[netip.Addr]bool, ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			m[a.Unmap()] = true
		}
	}
	if addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return x.bh.AddrList(nil, netlink.FAMILY_ALL) }); err == nil {
		for _, ad := range addrs {
			add(p.Host, ad.IP)
			if f.hostV4 == nil && ad.LinkIndex == x.parentIx && ad.IP.To4() != nil && ad.Scope == int(netlink.SCOPE_UNIVERSE) {
				f.hostV4 = ad.IP
			}
		}
	}
	if routes, err := hostnet.RetryDump(func() ([]netlink.Route, error) {
		return x.bh.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: x.parentIx}, netlink.RT_FILTER_OIF)
	}); err == nil {
		for _, r := range routes {
			add(p.Gateways, r.Gw)
			for _, nh := range r.MultiPath {
				add(p.Gateways, nh.Gw)
			}
		}
	}
	add(p.Gateways, x.gateway)
	return f
}

// register registers an address learnt from the guest's traffic (why
// names the evidence) unless it is the host's or a gateway's.
func (x *guest) register(a netip.Addr, why string) {
	// The learner's goroutine: vmrun's capabilities are raised only on
	// the thread doing the work (see internal/caps).
	_ = hostnet.Privileged(func() error { x.doRegister(a, why); return nil })
}

func (x *guest) doRegister(a netip.Addr, why string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	a = a.Unmap()
	if _, ok := x.addrs[a]; ok {
		return
	}
	switch x.policy().Check(a) {
	case learn.AddrHostLinkLoc:
		x.noticeOnce("ll:"+a.String(), fmt.Sprintf("%s: the guest uses %s, which is %s's own IPv6 link-local address (both derive it from the shared MAC, EUI-64): it is not registered, so the guest's link-local IPv6 does not work; configure the guest for stable-privacy or random interface identifiers (net.ipv6.conf.all.addr_gen_mode=2 or 3, or an IPv6 token)", x.parent, a, x.parent))
		x.refilter()
		return
	case learn.AddrHost:
		x.noticeOnce("host:"+a.String(), fmt.Sprintf("%s: the guest sends from %s, which is the host's own address: it is not registered (the guest needs an address of its own)", x.parent, a))
		x.refilter()
		return
	case learn.AddrGateway:
		x.noticeOnce("gw:"+a.String(), fmt.Sprintf("%s: the guest sends from %s, the gateway's address: it is not registered", x.parent, a))
		return
	}
	if err := x.registerLocked(a, why); err != nil {
		x.noticeOnce("err:"+a.String(), fmt.Sprintf("%s: guest address %s could not be registered: %v", x.parent, a, err))
	}
}

// errAddrBusy: another ipvlan link on the parent has the address.
var errAddrBusy = errors.New("address in use")

// registerLocked puts a on the ipvtap (/32 or /128, IPv6 without duplicate
// address detection), adds the host's route and neighbour entry for it on
// the shim, updates the learner's filter and tells the user.
func (x *guest) registerLocked(a netip.Addr, why string) error {
	if err := x.nh.AddrAdd(x.link, hostAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
		if errors.Is(err, unix.EADDRINUSE) {
			return fmt.Errorf("another ipvlan link on %s (another VM?) already has it: %w", x.parent, errAddrBusy)
		}
		return err
	}
	x.addrs[a] = why
	if x.shimIx != 0 && a.Is4() {
		if err := x.addHostEntry(a); err != nil {
			x.s.Trace.ReportNotice(fmt.Sprintf("%s: guest address %s registered, but the host cannot reach it: %v", x.parent, a, err))
		}
	}
	x.refilter()
	x.s.Trace.ReportNotice(fmt.Sprintf("%s: guest address %s registered (%s)", x.parent, a, why))
	x.s.Trace.ReportAddr(hostnet.GuestAddr{Addr: a, Source: learn.SourceOf(why)})
	return nil
}

// unregister removes an address the guest gave up.
func (x *guest) unregister(a netip.Addr, why string) {
	_ = hostnet.Privileged(func() error { x.doUnregister(a, why); return nil })
}

func (x *guest) doUnregister(a netip.Addr, why string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	a = a.Unmap()
	if _, ok := x.addrs[a]; !ok {
		return
	}
	delete(x.addrs, a)
	err := x.nh.AddrDel(x.link, hostAddr(a))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		x.s.Trace.ReportNotice(fmt.Sprintf("%s: guest address %s could not be unregistered: %v", x.parent, a, err))
	}
	if x.entries[a] {
		if err := x.removeHostEntry(a); err != nil {
			x.s.Trace.ReportEvent(fmt.Sprintf("host route to %s: %v", a, err))
		}
	}
	x.refilter()
	x.s.Trace.ReportNotice(fmt.Sprintf("%s: guest address %s unregistered (%s)", x.parent, a, why))
	x.s.Trace.ReportAddr(hostnet.GuestAddr{Addr: a, Source: learn.SourceOf(why), Drop: true})
}

// hostAddr is a as a host address (/32, /128; IPv6 without DAD).
func hostAddr(a netip.Addr) *netlink.Addr {
	bits := a.BitLen()
	ad := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
	if a.Is6() {
		ad.Flags = unix.IFA_F_NODAD
	}
	return ad
}

// noticeOnce tells the user msg, once per key.
func (x *guest) noticeOnce(key, msg string) {
	if !x.warned[key] {
		x.warned[key] = true
		x.s.Trace.ReportNotice(msg)
	}
}

// known is every address the learner's filter drops packets from: the
// registered ones, the gateways', 0.0.0.0, and the host's own once the
// user was told that the guest uses one (until then the guest's packets
// from it must reach the learner, which says so).
func (x *guest) known() []netip.Addr { return x.knownWith(x.policy()) }

// knownWith is known with policy p (an empty one: the addresses known
// without reading the host's facts).
func (x *guest) knownWith(p learn.Policy) []netip.Addr {
	out := []netip.Addr{netip.IPv4Unspecified()}
	for a := range p.Gateways {
		out = append(out, a)
	}
	for a := range p.Host {
		if x.warned["host:"+a.String()] || x.warned["ll:"+a.String()] {
			out = append(out, a)
		}
	}
	for a := range x.addrs {
		out = append(out, a)
	}
	return out
}

// refilter gives the learner's socket a filter that drops what is known.
func (x *guest) refilter() {
	if x.conn == nil {
		return
	}
	prog, err := learn.Program(x.known())
	if err == nil {
		err = x.conn.SetBPF(prog)
	}
	if err != nil {
		x.s.Trace.ReportEvent(fmt.Sprintf("learner filter: %v", err))
	}
}
