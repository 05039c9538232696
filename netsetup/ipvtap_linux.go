package netsetup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
	"golang.org/x/sys/unix"
)

// An ipvtap attachment (DESIGN.md, "ipvtap on Wi-Fi", points 1-10):
//
//   - The guest's ipvtap (L2, bridge flag) lives in a private network
//     namespace that vmrun creates (unshare on a throwaway thread) and
//     holds by an fd for the VM's life. There the guest's addresses can be
//     put on the ipvtap — which is what fills ipvlan's receive demux —
//     without the host treating them as its own. The ipvtap is created
//     right there: one RTM_NEWLINK from vmrun's namespace names the parent
//     there and the private namespace as the new link's (IFLA_NET_NS_FD),
//     so it never exists in vmrun's namespace and its character device is
//     registered once, in the private namespace's sysfs (moving a link
//     re-registers it). When vmrun dies the namespace dies, and the kernel
//     deletes the ipvtap in it: nothing to garbage-collect, so neither is
//     recorded (no bind mount, no name). The queue fds are opened from
//     vmrun's namespace, so QEMU's fds do not keep the private one alive.
//   - The guest NIC's MAC is the parent's: ipvlan does not rewrite source
//     MACs, and a Wi-Fi access point drops frames from unknown MACs.
//   - The guest's addresses are registered on the ipvtap: --guest-ip at
//     once, the others as a learner sees them in what the guest sends (an
//     AF_PACKET socket on the ipvtap; see learn.go).
//   - A watcher follows the parent (MAC changes, link down/up, another
//     ipvlan link switching the port's mode) and tells the user.
//   - Unless --no-host-link, a host-side ipvlan "shim" on the parent, a /32
//     route and a permanent neighbour entry per guest IPv4 address, and
//     rp_filter loose on the parent let the host reach the guest.
//
// Recorded for a crashed vmrun's clean-up: the shim, its routes and
// neighbour entries, and the rp_filter value.

// ipvtapSteps are the steps of --net ipvtap.
func ipvtapSteps(x *ipvtapRun) []hostnet.Step {
	return []hostnet.Step{
		{Name: "parent", Do: x.lookupParent},
		{Name: "claim shim", Do: x.claimShim},
		{Name: "netns", Do: x.makeNetns},
		{Name: "create", Do: x.create},
		{Name: "alias", Do: func(s *hostnet.Setup) error { return x.nh.LinkSetAlias(x.link, OwnerAlias(s.Cfg.VM)) }},
		{Name: "ipv6 off", Do: x.silenceIPv6},
		{Name: "verify", Do: x.verify},
		{Name: "open queues", Do: x.openQueues},
		{Name: "reset group", Do: func(s *hostnet.Setup) error { return x.nh.LinkSetGroup(x.link, 0) }},
		{Name: "allmulticast", Do: func(s *hostnet.Setup) error { return x.nh.LinkSetAllmulticastOn(x.link) }},
		{Name: "up", Do: func(s *hostnet.Setup) error { return x.nh.LinkSetUp(x.link) }},
		{Name: "check mode", Do: func(s *hostnet.Setup) error { return x.checkMode() }},
		{Name: "shim", Do: x.makeShim},
		{Name: "rp_filter", Do: x.loosenRPFilter},
		{Name: "register", Do: x.registerStatic},
		{Name: "open vhost", Do: (*hostnet.Setup).OpenVhost},
		{Name: "learn", Do: x.startLearner},
		{Name: "watch", Do: x.startWatcher},
	}
}

// applyIPVtap applies an ipvtap plan.
func applyIPVtap(ctx context.Context, p Plan, rec Recorder) (*Attachment, error) {
	x := &ipvtapRun{ns: -1, addrs: map[netip.Addr]string{}, entries: map[netip.Addr]bool{},
		warned: map[string]bool{}, online: true, xids: map[uint32]time.Time{}, offered: map[netip.Addr]uint32{},
		noHostLink: p.NoHostLink, guestIP: p.GuestIP, gateway: p.Gateway}
	return applySteps(ctx, p, rec, hostnet.LinkObject(p.Name, p.LinkName, "ipvtap", p.MAC), ipvtapSteps(x))
}

// ipvtapRun is one ipvtap attachment: built by its steps, then served by
// the learner and the watcher until Undo.
type ipvtapRun struct {
	s        *hostnet.Setup
	parent   string // the parent's name
	parentIx int    // and index, in vmrun's namespace
	guestMAC net.HardwareAddr
	nonce    uint32

	noHostLink       bool   // the plan's --no-host-link
	guestIP, gateway net.IP // the plan's --guest-ip (nil: learned) and --gateway

	ns   netns.NsHandle  // the private namespace
	nh   *netlink.Handle // netlink in the private namespace
	bh   *netlink.Handle // netlink in vmrun's namespace, for the services
	link netlink.Link    // the ipvtap, as seen in the private namespace

	shimName string
	shimIx   int // 0 without a shim
	shimGone bool

	// mu guards what follows and serialises the services' kernel work.
	mu      sync.Mutex
	addrs   map[netip.Addr]string // registered guest addresses → why
	entries map[netip.Addr]bool   // guest IPv4 with a host route and neighbour entry on the shim
	warned  map[string]bool       // notices given once
	conn    *packet.Conn          // the learner's socket (nil before "learn")
	xids    map[uint32]time.Time  // the guest's recent DHCP transactions
	offered map[netip.Addr]uint32 // registered from a unicast DHCPOFFER (transaction), until the guest requests

	lastMAC net.HardwareAddr // the parent's MAC as last seen
	online  bool             // the parent was running when last seen
	badMode string           // the wrong port mode last reported, "" when L2

}

// lookupParent finds the parent; the guest's MAC is the parent's, now.
func (x *ipvtapRun) lookupParent(s *hostnet.Setup) error {
	x.s = s
	if err := s.LookupParent(); err != nil {
		return err
	}
	a := s.ParentLink.Attrs()
	x.parent, x.parentIx = a.Name, a.Index
	x.guestMAC = append(net.HardwareAddr(nil), a.HardwareAddr...)
	x.lastMAC = x.guestMAC
	x.online = a.RawFlags&unix.IFF_RUNNING != 0
	if len(x.guestMAC) != 6 {
		return hostnet.Refuse(ErrUnsuitable, "%s has no Ethernet MAC address, which an ipvtap guest must share", x.parent)
	}
	if !bytes.Equal(x.guestMAC, s.Cfg.MAC) {
		s.Trace.ReportEvent(fmt.Sprintf("%s's MAC is %s now (the plan said %s): the guest uses %s", x.parent, x.guestMAC, s.Cfg.MAC, x.guestMAC))
	}
	s.Att.MAC = append(net.HardwareAddr(nil), x.guestMAC...)
	links, err := hostnet.RetryDump(s.H.LinkList)
	if err != nil {
		return err
	}
	if why := hostnet.IPVtapBlocked(x.parent, hostnet.UppersOf(links, x.parentIx)); why != "" {
		return hostnet.Refuse(ErrUnsuitable, "%s; use --net routed, or remove that link", why)
	}
	return nil
}

// claimShim frees the shim's owned name: a leftover of a crashed run of
// the same VM is deleted, anything else refused. (The ipvtap's name is
// always free: its namespace is new.)
func (x *ipvtapRun) claimShim(s *hostnet.Setup) error {
	if x.noHostLink {
		return nil
	}
	x.shimName = LinkName(s.Cfg.VM, RoleShim)
	return s.ClaimLink(x.shimName, x.shimObject())
}

func (x *ipvtapRun) shimObject() rundir.Object {
	return hostnet.LinkObject(x.s.Cfg.VM, x.shimName, "ipvlan", x.guestMAC)
}

// makeNetns creates the private network namespace, on a throwaway
// thread, and opens netlink in it.
func (x *ipvtapRun) makeNetns(s *hostnet.Setup) error {
	err := hostnet.OnThrowawayThreadBack(func() error {
		caps.Raise(unix.CAP_SYS_ADMIN) // the thread dies with it
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare a network namespace: %w", err)
		}
		ns, err := netns.Get()
		if err != nil {
			return err
		}
		x.ns = ns
		x.nh, err = hostnet.NewHandle()
		return err
	})
	s.OnUndo(func() error {
		if x.nh != nil {
			x.nh.Close()
		}
		if x.bh != nil {
			x.bh.Close()
		}
		if x.ns.IsOpen() {
			return x.ns.Close()
		}
		return nil
	})
	if err != nil {
		return err
	}
	x.bh, err = hostnet.NewHandle()
	return err
}

// inPrivate runs fn on a throwaway thread in the private namespace.
func (x *ipvtapRun) inPrivate(fn func() error) error {
	return hostnet.OnThrowawayThreadBack(func() error {
		if err := netns.Set(x.ns); err != nil {
			return fmt.Errorf("enter vmrun's private network namespace: %w", err)
		}
		return fn()
	})
}

// create creates the ipvtap on the parent, in the private namespace, in
// L2 mode with the bridge flag, from netlink.NewLinkAttrs (a literal
// LinkAttrs{} would give it a 0-slot queue that drops every frame to the
// guest). The device group nonce proves which sysfs shows it (hostnet.TapDevNum).
func (x *ipvtapRun) create(s *hostnet.Setup) error {
	nonce, err := hostnet.GroupNonce()
	if err != nil {
		return err
	}
	x.nonce = nonce
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex, la.Group = s.Cfg.LinkName, x.parentIx, nonce
	la.Namespace = netlink.NsFd(x.ns)
	iv := &netlink.IPVtap{IPVlan: netlink.IPVlan{LinkAttrs: la, Mode: netlink.IPVLAN_MODE_L2, Flag: netlink.IPVLAN_FLAG_BRIDGE}}
	if err := s.H.LinkAdd(iv); err != nil {
		return ipvlanAddError(x.parent, err)
	}
	name := s.Cfg.LinkName
	l, err := x.nh.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s in vmrun's private namespace: %w", name, err)
	}
	x.link, s.Link = l, l
	// Nothing else lives in the private namespace: its index is the link.
	s.OnUndo(func() error {
		if err := x.nh.LinkDel(l); err != nil && !hostnet.IsNotFound(err) {
			return fmt.Errorf("delete %s in vmrun's private namespace: %w", name, err)
		}
		return nil
	})
	return nil
}

// ipvlanAddError explains the kernel's refusals of an ipvlan link.
func ipvlanAddError(parent string, err error) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		return hostnet.Refuse(ErrUnsuitable, "the kernel refused an ipvlan link on %s (EBUSY): it carries a macvlan or macvtap link (perhaps in another network namespace) or belongs to a bridge or bond, and ipvlan cannot share it; remove that, or use --net routed", parent)
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EAFNOSUPPORT):
		return hostnet.Refuse(ErrNoKernelSupport, "this kernel cannot create ipvlan/ipvtap links (%v): load the ipvtap module (modprobe ipvtap), or use --net routed", err)
	}
	return err
}

// silenceIPv6 keeps the private namespace's IPv6 from making addresses of
// its own on the ipvtap (vmrun adds the guest's, see register).
func (x *ipvtapRun) silenceIPv6(*hostnet.Setup) error {
	return hostnet.SilenceIPv6Link(x.nh, x.link)
}

// verify re-reads the ipvtap and checks what the kernel made of it.
func (x *ipvtapRun) verify(s *hostnet.Setup) error {
	l, err := x.nh.LinkByName(s.Cfg.LinkName)
	if err != nil {
		return err
	}
	x.link, s.Link = l, l
	if err := checkIPVtap(l, x.guestMAC, OwnerAlias(s.Cfg.VM)); err != nil {
		return err
	}
	s.Att.MTU = l.Attrs().MTU
	return nil
}

// checkIPVtap compares a re-read ipvtap with what was asked.
func checkIPVtap(l netlink.Link, mac net.HardwareAddr, alias string) error {
	iv, ok := l.(*netlink.IPVtap)
	a := l.Attrs()
	switch {
	case !ok:
		return fmt.Errorf("%w: it is a %s, not an ipvtap", ErrVerify, l.Type())
	case hostnet.IPVlanModeString(iv.Mode, iv.Flag) != hostnet.IPVtapPortMode:
		return fmt.Errorf("%w: mode %q, not %q", ErrVerify, hostnet.IPVlanModeString(iv.Mode, iv.Flag), hostnet.IPVtapPortMode)
	case !bytes.Equal(a.HardwareAddr, mac):
		return fmt.Errorf("%w: MAC %s, not the parent's %s", ErrVerify, a.HardwareAddr, mac)
	case a.TxQLen <= 0:
		return fmt.Errorf("%w: queue length %d (every frame to the guest would be dropped)", ErrVerify, a.TxQLen)
	case a.Alias != alias:
		return fmt.Errorf("%w: alias %q, not %q", ErrVerify, a.Alias, alias)
	}
	return nil
}

// openQueues opens the ipvtap's character device once per queue. Its
// number is read from the private namespace's own sysfs (the move
// re-registered the device, and /sys shows vmrun's namespace); the node is
// opened from vmrun's namespace, so QEMU's fds do not keep the private one
// alive after vmrun.
func (x *ipvtapRun) openQueues(s *hostnet.Setup) error {
	att := s.Att
	s.OnUndo(func() error { return hostnet.CloseFiles(att.Files) })
	a := x.link.Attrs()
	var dev uint64
	var from string
	err := x.inPrivate(func() error {
		caps.Raise(unix.CAP_SYS_ADMIN) // a sysfs of this namespace; the thread dies with it
		var err error
		dev, from, err = hostnet.TapDevNum("ipvtap", a.Name, a.Index, x.nonce)
		return err
	})
	if err != nil {
		return err
	}
	s.Trace.ReportEvent(fmt.Sprintf("%s is character device %d:%d (read from %s of vmrun's private namespace)", a.Name, unix.Major(dev), unix.Minor(dev), from))
	att.Files, err = hostnet.OpenCharDev(dev, s.Cfg.Queues)
	return err
}

// portMode reads the parent's ipvlan port mode through the ipvtap.
func (x *ipvtapRun) portMode() (string, error) {
	l, err := x.nh.LinkByIndex(x.link.Attrs().Index)
	if err != nil {
		return "", fmt.Errorf("%s: %w", x.link.Attrs().Name, err)
	}
	iv, ok := l.(*netlink.IPVtap)
	if !ok {
		return "", fmt.Errorf("%w: %s is a %s, not an ipvtap", ErrVerify, l.Attrs().Name, l.Type())
	}
	return hostnet.IPVlanModeString(iv.Mode, iv.Flag), nil
}

// checkMode refuses a port that is not (any more) in L2 mode: every
// ipvlan link on a parent shares one mode, and the last one created sets it.
func (x *ipvtapRun) checkMode() error {
	m, err := x.portMode()
	if err != nil {
		return err
	}
	if m != hostnet.IPVtapPortMode {
		return hostnet.Refuse(ErrVerify, "the ipvlan port of %s is in mode %q, not %q: another ipvlan link on %s switched it (the last one created sets the mode for all), and the guest's ARP and DHCP would be dropped; remove that link or recreate it in L2 mode", x.parent, m, hostnet.IPVtapPortMode, x.parent)
	}
	return nil
}

// makeShim creates the host side of host ↔ guest traffic: an ipvlan link
// (same port, so L2 and the bridge flag too) on the parent in vmrun's
// namespace, up, without addresses. The routes and neighbour entries on it
// are added as guest addresses are registered; they go with the shim.
func (x *ipvtapRun) makeShim(s *hostnet.Setup) error {
	if x.noHostLink {
		return nil
	}
	// Registered before the shim's own undo, so it runs after the shim is
	// gone (and its routes and neighbour entries with it).
	s.OnUndo(x.dropHostEntries)
	obj, h, rec := x.shimObject(), s.H, s.Rec
	if err := rec.Record(obj); err != nil {
		return err
	}
	s.OnUndo(func() error {
		if err := hostnet.DeleteOwnedLink(h, obj); err != nil {
			return err
		}
		x.mu.Lock()
		x.shimGone = true
		x.mu.Unlock()
		return rec.Forget(obj)
	})
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex = x.shimName, x.parentIx
	shim := &netlink.IPVlan{LinkAttrs: la, Mode: netlink.IPVLAN_MODE_L2, Flag: netlink.IPVLAN_FLAG_BRIDGE}
	if err := s.H.LinkAdd(shim); err != nil {
		return fmt.Errorf("host-side shim %s: %w", x.shimName, ipvlanAddError(x.parent, err))
	}
	if err := s.H.LinkSetAlias(shim, OwnerAlias(s.Cfg.VM)); err != nil {
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
func (x *ipvtapRun) loosenRPFilter(s *hostnet.Setup) error {
	if x.noHostLink {
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
// (they need rp_filter loose too), or "".
func (x *ipvtapRun) otherShims() string {
	links, err := hostnet.RetryDump(x.bh.LinkList)
	if err != nil {
		return ""
	}
	var names []string
	for _, l := range links {
		a := l.Attrs()
		if a.ParentIndex == x.parentIx && a.Name != x.shimName && l.Type() == "ipvlan" &&
			strings.HasPrefix(a.Alias, OwnerAlias("")) && strings.HasSuffix(a.Name, string(rune(RoleShim))) {
			names = append(names, a.Name)
		}
	}
	return strings.Join(names, ", ")
}

// registerStatic registers --guest-ip at once.
func (x *ipvtapRun) registerStatic(s *hostnet.Setup) error {
	if x.guestIP == nil {
		return nil
	}
	a, ok := netip.AddrFromSlice(x.guestIP)
	if !ok {
		return hostnet.Refuse(ErrBadRequest, "--guest-ip %s is not an IP address", x.guestIP)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	switch x.policy().Check(a.Unmap()) {
	case learn.AddrHost, learn.AddrHostLinkLoc:
		return hostnet.Refuse(ErrBadRequest, "--guest-ip %s is %s's own address; give the guest an address of its own", a, x.parent)
	case learn.AddrGateway:
		return hostnet.Refuse(ErrBadRequest, "--guest-ip %s is the gateway's address; give the guest an address of its own", a)
	}
	return x.registerLocked(a.Unmap(), "--guest-ip")
}

// policy collects the addresses never to register: the host's own, and
// the gateways of the routes through the parent (and --gateway).
func (x *ipvtapRun) policy() learn.Policy {
	p := learn.Policy{Host: map[netip.Addr]bool{}, Gateways: map[netip.Addr]bool{}}
	add := func(m map[netip.Addr]bool, ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			m[a.Unmap()] = true
		}
	}
	if addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return x.bh.AddrList(nil, netlink.FAMILY_ALL) }); err == nil {
		for _, ad := range addrs {
			add(p.Host, ad.IP)
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
	return p
}

// register registers an address learnt from the guest's traffic (why
// names the evidence) unless it is the host's or a gateway's.
func (x *ipvtapRun) register(a netip.Addr, why string) {
	// The learner's goroutine: vmrun's capabilities are raised only on
	// the thread doing the work (see internal/caps).
	_ = hostnet.Privileged(func() error { x.doRegister(a, why); return nil })
}

func (x *ipvtapRun) doRegister(a netip.Addr, why string) {
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
		msg := fmt.Sprintf("%s: the guest sends from %s, which is the host's own address: it is not registered (the guest needs an address of its own)", x.parent, a)
		if strings.HasPrefix(why, "DHCP") {
			msg = fmt.Sprintf("%s: the guest asked the DHCP server for %s, the host's own address: its DHCP client identifies itself as the host does (the guest shares the host's MAC); give it a client identifier of its own (see docs/wifi.md)", x.parent, a)
		}
		x.noticeOnce("host:"+a.String(), msg)
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

// registerLocked puts a on the ipvtap (/32 or /128, IPv6 without duplicate
// address detection), adds the host's route and neighbour entry for it on
// the shim, updates the learner's filter and tells the user.
func (x *ipvtapRun) registerLocked(a netip.Addr, why string) error {
	if err := x.nh.AddrAdd(x.link, hostAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
		if errors.Is(err, unix.EADDRINUSE) {
			return fmt.Errorf("another ipvlan link on %s (another VM?) already has it", x.parent)
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
	return nil
}

// unregister removes an address the guest gave up.
func (x *ipvtapRun) unregister(a netip.Addr, why string) {
	_ = hostnet.Privileged(func() error { x.doUnregister(a, why); return nil })
}

func (x *ipvtapRun) doUnregister(a netip.Addr, why string) {
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

// addHostEntry routes guest IPv4 address a through the shim, from the
// host's address on the parent, with a permanent neighbour entry at the
// parent's (the guest's) MAC; both are recorded first.
func (x *ipvtapRun) addHostEntry(a netip.Addr) error {
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
func (x *ipvtapRun) hostIPv4() net.IP {
	addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) {
		return x.bh.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: x.parentIx}}, netlink.FAMILY_V4)
	})
	if err != nil {
		return nil
	}
	for _, ad := range addrs {
		if ad.Scope == int(netlink.SCOPE_UNIVERSE) {
			return ad.IP
		}
	}
	return nil
}

// removeHostEntry deletes the route and neighbour entry of a and forgets them.
func (x *ipvtapRun) removeHostEntry(a netip.Addr) error {
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
func (x *ipvtapRun) dropHostEntries() error {
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

// noticeOnce tells the user msg, once per key.
func (x *ipvtapRun) noticeOnce(key, msg string) {
	if !x.warned[key] {
		x.warned[key] = true
		x.s.Trace.ReportNotice(msg)
	}
}

// known is every address the learner's filter drops packets from: the
// registered ones, the gateways', 0.0.0.0, and the host's own once the
// user was told that the guest uses one (until then the guest's packets
// from it must reach the learner, which says so).
func (x *ipvtapRun) known() []netip.Addr {
	p := x.policy()
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
func (x *ipvtapRun) refilter() {
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

// ETH_P_ALL in network byte order is what packet.Listen wants as protocol.
const ethPAll = 0x0003

// startLearner starts the learner — a packet socket on the ipvtap in the
// private namespace, which sees every frame the guest sends, registering
// the addresses they reveal — and the watcher of DHCP replies to the
// guest on the parent, until Undo.
func (x *ipvtapRun) startLearner(s *hostnet.Setup) error {
	learner, err := s.GoReopening(hostnet.ServiceLearner, hostnet.LearnerPolicy, x.openLearner)
	if err != nil {
		return err
	}
	replies, err := s.GoReopening(hostnet.ServiceReplies, hostnet.RepliesPolicy, x.openReplies)
	if err != nil {
		learner.Stop()
		return err
	}
	s.OnUndo(func() error {
		learner.Cancel()
		replies.Cancel()
		learner.Wait()
		replies.Wait()
		return nil
	})
	return nil
}

// openLearner opens the learner's socket, filtered for what is not known
// yet, and returns its service.
func (x *ipvtapRun) openLearner() (func(context.Context) error, error) {
	x.mu.Lock()
	prog, err := learn.Program(x.known())
	x.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a := x.link.Attrs()
	var conn *packet.Conn
	err = x.inPrivate(func() error {
		var err error
		conn, err = packet.Listen(&net.Interface{Index: a.Index, Name: a.Name}, packet.Raw, ethPAll, &packet.Config{Filter: prog})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", a.Name, err)
	}
	x.mu.Lock()
	x.conn = conn
	x.mu.Unlock()
	return func(ctx context.Context) error {
		defer func() {
			x.mu.Lock()
			x.conn = nil
			x.mu.Unlock()
			closeIdle(conn)
		}()
		return x.learn(ctx, conn)
	}, nil
}

// openReplies opens the socket of the watcher of DHCP replies on the
// parent and returns its service.
func (x *ipvtapRun) openReplies() (func(context.Context) error, error) {
	rprog, err := learn.ReplyProgram()
	if err != nil {
		return nil, err
	}
	conn, err := packet.Listen(&net.Interface{Index: x.parentIx, Name: x.parent}, packet.Raw, int(ethernet.EtherTypeIPv4), &packet.Config{Filter: rprog})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", x.parent, err)
	}
	return func(ctx context.Context) error {
		defer closeIdle(conn)
		return x.catchReplies(ctx, conn)
	}, nil
}

// wakeOnDone makes a read blocked on conn return when ctx ends; the
// returned function undoes that.
func wakeOnDone(ctx context.Context, conn *packet.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
}

// closeIdle closes a packet socket no one reads any more, off the
// caller's path: closing one waits for an RCU grace period
// (packet_release), and Undo should not wait for it.
func closeIdle(conn *packet.Conn) {
	go conn.Close()
}

// learn reads the guest's frames until ctx ends, or the socket fails.
func (x *ipvtapRun) learn(ctx context.Context, conn *packet.Conn) error {
	defer wakeOnDone(ctx, conn)()
	err := learn.ReadFrames(conn, make([]byte, learn.SnapFull), ctx.Done(), func(frame []byte) {
		if xid, ok := learn.GuestDHCPXID(frame, x.guestMAC); ok {
			x.dhcpTransaction(xid)
		}
		ev, ok := learn.GuestAddrEvent(frame, x.guestMAC)
		switch {
		case !ok:
		case ev.Drop:
			x.unregister(ev.Addr, ev.Why)
		default:
			if ev.Why == "DHCP request" {
				x.requested(ev.Addr)
			}
			x.register(ev.Addr, ev.Why)
		}
	})
	if err != nil {
		return fmt.Errorf("reading the guest's frames on %s's ipvtap: %w", x.parent, err)
	}
	return nil
}

// dhcpTransactionLife is how long a guest's DHCP transaction is watched
// for replies on the parent.
const dhcpTransactionLife = 2 * time.Minute

// dhcpTransaction notes a DHCP transaction the guest started.
func (x *ipvtapRun) dhcpTransaction(xid uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := time.Now()
	for id, t := range x.xids {
		if now.Sub(t) > dhcpTransactionLife {
			delete(x.xids, id)
		}
	}
	x.xids[xid] = now
}

// requested drops the addresses registered from unicast offers of the
// guest's transactions that the guest did not take (it requested a).
func (x *ipvtapRun) requested(a netip.Addr) {
	x.mu.Lock()
	var drop []netip.Addr
	for b := range x.offered {
		if b != a {
			drop = append(drop, b)
		}
	}
	clear(x.offered)
	x.mu.Unlock()
	for _, b := range drop {
		x.unregister(b, "the guest requested "+a.String()+" instead")
	}
}

// catchReplies watches the parent for DHCP servers' replies to the guest
// that were sent unicast, to an address ipvlan cannot hand to the guest
// until it is registered: the guest's DHCP client did not ask for
// broadcast replies. It registers the address, so the client's next try
// gets through.
func (x *ipvtapRun) catchReplies(ctx context.Context, conn *packet.Conn) error {
	defer wakeOnDone(ctx, conn)()
	err := learn.ReadFrames(conn, make([]byte, learn.SnapFull), ctx.Done(), func(frame []byte) {
		r, ok := learn.DHCPServerReply(frame, x.guestMAC)
		if !ok || !r.Unicast {
			return
		}
		x.mu.Lock()
		_, ours := x.xids[r.XID]
		_, have := x.addrs[r.Addr]
		if ours && !have {
			if r.Offer {
				x.offered[r.Addr] = r.XID
			}
			x.noticeOnce("unicast-dhcp", fmt.Sprintf("%s: the guest's DHCP client does not ask for broadcast replies, so the server's reply to %s was lost; vmrun registered the address and the client's next try gets through (set the broadcast flag in the guest to save that retry, see docs/wifi.md)", x.parent, r.Addr))
		}
		x.mu.Unlock()
		if ours && !have {
			what := "DHCP ack"
			if r.Offer {
				what = "DHCP offer"
			}
			x.register(r.Addr, what+", sent unicast")
		}
	})
	if err != nil {
		return fmt.Errorf("reading DHCP replies on %s: %w", x.parent, err)
	}
	return nil
}

// startWatcher subscribes to link events in vmrun's namespace and follows
// the parent until Undo.
func (x *ipvtapRun) startWatcher(s *hostnet.Setup) error {
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
func (x *ipvtapRun) openWatcher() (func(context.Context) error, error) {
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
func (x *ipvtapRun) watch(ctx context.Context, ch <-chan netlink.LinkUpdate) error {
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
func (x *ipvtapRun) onLinkUpdate(u netlink.LinkUpdate) bool {
	a := u.Attrs()
	x.mu.Lock()
	defer x.mu.Unlock()
	if a.Index != x.parentIx {
		if (u.Type() == "ipvlan" || u.Type() == "ipvtap") && a.ParentIndex == x.parentIx && a.Name != x.shimName {
			x.watchMode(fmt.Sprintf("%s link %s", u.Type(), a.Name))
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
func (x *ipvtapRun) watchMAC(mac net.HardwareAddr) {
	if len(mac) == 0 || bytes.Equal(mac, x.lastMAC) {
		return
	}
	x.lastMAC = append(net.HardwareAddr(nil), mac...)
	if bytes.Equal(mac, x.guestMAC) {
		x.s.Trace.ReportNotice(fmt.Sprintf("%s's MAC is %s again, the guest's: the guest can reach the LAN again", x.parent, mac))
		return
	}
	x.s.Trace.ReportNotice(fmt.Sprintf("WARNING: %s's MAC changed from %s to %s (MAC address randomisation?), but the guest's NIC still uses %s: the access point drops the guest's frames and the guest is offline. A running guest's MAC cannot be changed under it: restart the VM (vmrun gives it the new MAC), and keep %s's MAC fixed for this network (NetworkManager: nmcli connection modify <wifi> wifi.cloned-mac-address permanent)",
		x.parent, x.guestMAC, mac, x.guestMAC, x.parent))
}

// watchMode reports a port mode other than L2 (and its return to L2).
func (x *ipvtapRun) watchMode(cause string) {
	m, err := x.portMode()
	switch {
	case err != nil:
		x.s.Trace.ReportEvent(fmt.Sprintf("ipvlan mode of %s: %v", x.parent, err))
	case m != hostnet.IPVtapPortMode && m != x.badMode:
		x.badMode = m
		x.s.Trace.ReportNotice(fmt.Sprintf("WARNING: the ipvlan port of %s is now in mode %q, not %q (after %s: the last ipvlan link created or changed sets the mode of all): the guest's ARP and DHCP are dropped; delete that link or make it L2 (ip link set LINK type ipvlan mode l2), or restart the VM", x.parent, m, hostnet.IPVtapPortMode, cause))
	case m == hostnet.IPVtapPortMode && x.badMode != "":
		x.badMode = ""
		x.s.Trace.ReportNotice(fmt.Sprintf("the ipvlan port of %s is in mode %q again", x.parent, m))
	}
}

// recheck verifies the ipvtap after the parent came back: up, L2 mode,
// every registered address still on it, every host entry still there.
func (x *ipvtapRun) recheck() string {
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
	for a := range x.entries {
		if err := x.addHostEntryAgain(a); err != nil {
			fixed = append(fixed, fmt.Sprintf("host route to %s: %v", a, err))
		}
	}
	s := fmt.Sprintf("checked the L2 mode and %d registered address(es)", len(x.addrs))
	if len(fixed) > 0 {
		s += " (" + strings.Join(fixed, ", ") + ")"
	}
	return s
}

// addHostEntryAgain restores a host entry (already recorded).
func (x *ipvtapRun) addHostEntryAgain(a netip.Addr) error {
	dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
	if err := x.bh.RouteReplace(&netlink.Route{LinkIndex: x.shimIx, Dst: dst, Scope: netlink.SCOPE_LINK, Src: x.hostIPv4()}); err != nil {
		return err
	}
	return x.bh.NeighSet(&netlink.Neigh{LinkIndex: x.shimIx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: dst.IP, HardwareAddr: x.guestMAC})
}

// reannounce sends a gratuitous ARP for each registered IPv4 address from
// the ipvtap, as if the guest did, so the LAN's caches point at it again.
func (x *ipvtapRun) reannounce() {
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
