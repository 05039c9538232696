package ipvtap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/chardev"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// Config is what an ipvtap attachment takes from the plan.
type Config struct {
	Link hostnet.LinkConfig // Parent is the lower device; MAC the parent's as planned
	Caps []int              // the capabilities to raise (internal/caps numbers)
	// ShimName is the owned name of the host-side shim, "" for none
	// (--no-host-link: the host cannot reach the guest).
	ShimName string
	// GuestIP is --guest-ip, registered at once (nil: learned from the
	// guest's traffic); Gateway is --gateway, never registered.
	GuestIP, Gateway net.IP
}

// ipvtapSteps are the steps of --net ipvtap.
func ipvtapSteps(x *guest) []hostnet.Step {
	return []hostnet.Step{
		// The private namespace's thread (startPrivate, before the
		// set-up's own preparations) makes it and its sockets beside the
		// steps in vmrun's namespace and the netlink requests; the set-up
		// adopts it: its undo stops it.
		{Name: "private thread", Do: func(s *hostnet.Setup) error {
			x.s, x.adopted = s, true
			s.OnUndo(x.stopPrivate)
			return nil
		}},
		{Name: "parent", Do: x.lookupParent},
		{Name: "claim shim", Do: x.claimShim},
		// The host side in vmrun's namespace while the private thread
		// unshares: the shim is of the ipvtap's port, in its mode.
		{Name: "shim", Do: x.makeShim},
		{Name: "rp_filter", Do: x.loosenRPFilter},
		{Name: "open vhost", Do: (*hostnet.Setup).OpenVhost},
		{Name: "netns", Do: x.makeNetns},
		{Name: "create", Do: x.create},
		{Name: "alias", Do: func(s *hostnet.Setup) error { return x.nh.LinkSetAlias(x.link, hostnet.OwnerAlias(s.Cfg.VM)) }},
		{Name: "ipv6 off", Do: x.silenceIPv6},
		{Name: "open queues", Do: x.openQueues},
		{Name: "allmulticast", Do: func(s *hostnet.Setup) error { return x.nh.LinkSetAllmulticastOn(x.link) }},
		// The DHCP port's filters before "up": a root qdisc grafted on a
		// link that is up first deactivates it, which waits for an
		// expedited RCU grace period (synchronize_net under the RTNL
		// lock) — IPIs to every CPU, slow on a loaded VM.
		{Name: "dhcp port", Do: x.makeDHCPPort},
		{Name: "up", Do: func(s *hostnet.Setup) error { return x.nh.LinkSetUp(x.link) }},
		{Name: "verify", Do: x.verify},
		{Name: "register", Do: x.registerStatic},
		{Name: "learn", Do: x.startLearner},
		{Name: "watch", Do: x.startWatcher},
		{Name: "dhcp proxy", Do: x.startProxy},
		{Name: "upstream lease", Do: x.startUpstream},
	}
}

// Attach creates the ipvtap, the host side and the services that follow
// the guest (see hostnet.Run).
func (c Config) Attach(ctx context.Context, rec hostnet.Recorder) (*hostnet.Attachment, error) {
	x := &guest{ns: -1, home: -1, hostNS: -1, addrs: map[netip.Addr]string{}, entries: map[netip.Addr]bool{},
		warned: map[string]bool{}, online: true,
		leased:   make(chan struct{}),
		shimName: c.ShimName, guestIP: c.GuestIP, gateway: c.Gateway}
	obj := hostnet.LinkObject(c.Link.VM, c.Link.LinkName, "ipvtap", c.Link.MAC)
	if err := x.startPrivate(); err != nil {
		return nil, err
	}
	att, err := hostnet.Run(ctx, c.Link, rec, obj, c.Caps, ipvtapSteps(x))
	if err != nil && !x.adopted {
		err = errors.Join(err, x.stopPrivate())
	}
	return att, err
}

// guest is one ipvtap attachment: built by its steps, then served by
// the learner, the watcher, the DHCP proxy and the upstream lease's keeper
// until Undo.
type guest struct {
	s        *hostnet.Setup
	adopted  bool   // the set-up undoes the private thread (its first step)
	parent   string // the parent's name
	parentIx int    // and index, in vmrun's namespace
	guestMAC net.HardwareAddr
	nonce    uint32

	guestIP, gateway net.IP // --guest-ip (nil: learned) and --gateway

	ns   netns.NsHandle  // the private namespace
	home netns.NsHandle  // vmrun's, where a visit to the private one returns
	nh   *netlink.Handle // netlink in the private namespace
	bh   *netlink.Handle // netlink in vmrun's namespace, for the services
	link netlink.Link    // the ipvtap, as seen in the private namespace

	// The private thread (startPrivate) and its work's results: made
	// (makePrivate), ported (the DHCP port's socket) and sockets
	// (openSockets), each read once.
	thread                *hostnet.Thread
	made, ported, sockets <-chan error
	ivIndex               int // above every index in the private namespace (makePrivate)
	hostMax               int // the highest index in vmrun's (lookupParent)

	uev     *chardev.Uevents // the private namespace's uevents, until openQueues
	port    *packet.Conn     // the guest's DHCP port, on the private loopback (dhcpport_linux.go)
	answers *packet.Conn     // the socket vmrun answers the guest on
	early   *packet.Conn     // the learner's first socket, opened by the private thread, until "learn"
	hostNS  netns.NsHandle   // vmrun's namespace, for the upstream lease's socket

	shimName string // "" without a shim (--no-host-link)
	shimIx   int    // 0 without a shim
	shimGone bool

	// mu guards what follows and serialises the services' kernel work.
	mu      sync.Mutex
	addrs   map[netip.Addr]string // registered guest addresses → why
	entries map[netip.Addr]bool   // guest IPv4 with a host route and neighbour entry on the shim
	warned  map[string]bool       // notices given once
	conn    *packet.Conn          // the learner's socket (nil before "learn")

	// setupFacts are the facts read for --guest-ip's check, while it is
	// registered (registerStatic); nil otherwise (see policy).
	setupFacts *facts

	lastMAC net.HardwareAddr // the parent's MAC as last seen
	online  bool             // the parent was running when last seen
	badMode string           // the wrong port mode last reported, "" when L2

	lease      *dhcpserve.Config // what the guest's DHCP is answered with; nil before the upstream lease
	leased     chan struct{}     // closed at the first upstream lease
	leasedDone bool
}

// lookupParent finds the parent; the guest's MAC is the parent's, now.
func (x *guest) lookupParent(s *hostnet.Setup) error {
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
		return hostnet.Refuse(hostnet.ErrUnsuitable, "%s has no Ethernet MAC address, which an ipvtap guest must share", x.parent)
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
		return hostnet.Refuse(hostnet.ErrUnsuitable, "%s; use --net routed, or remove that link", why)
	}
	for _, l := range links {
		x.hostMax = max(x.hostMax, l.Attrs().Index)
	}
	return nil
}

// claimShim frees the shim's owned name: a leftover of a crashed run of
// the same VM is deleted, anything else refused. (The ipvtap's name is
// always free: its namespace is new.)
func (x *guest) claimShim(s *hostnet.Setup) error {
	if x.shimName == "" {
		return nil
	}
	return s.ClaimLink(x.shimName, x.shimObject())
}

func (x *guest) shimObject() rundir.Object {
	return hostnet.LinkObject(x.s.Cfg.VM, x.shimName, "ipvlan", x.guestMAC)
}

// startPrivate starts the private namespace's thread (hostnet.Thread),
// which unshares and makes netlink there, the uevent socket and the DHCP
// port (openPort) while this thread prepares the set-up and looks up the
// parent; once the ipvtap exists it opens the sockets on it (openSockets)
// while this one sets the link up.
func (x *guest) startPrivate() error {
	home, err := netns.Get()
	if err != nil {
		return fmt.Errorf("vmrun's network namespace: %w", err)
	}
	x.home = home
	t := hostnet.NewThread(home, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare a network namespace: %w", err)
		}
		return nil
	})
	x.thread = t
	x.made = t.Go(x.makePrivate)
	x.ported = t.Go(func() error {
		if x.nh == nil { // makePrivate failed, and said why
			return nil
		}
		var err error
		if x.port, err = openPort(x.nh); err != nil {
			return fmt.Errorf("the guest's DHCP port: %w", err)
		}
		return nil
	})
	return nil
}

// stopPrivate stops the private thread and closes what it made.
func (x *guest) stopPrivate() error {
	x.thread.Stop()
	x.thread.Wait()
	return x.closePrivate()
}

// closePrivate closes, once the private thread stopped, what it made and
// the handles the set-up keeps beside them (netlink in vmrun's namespace,
// vmrun's namespace).
func (x *guest) closePrivate() error {
	var errs []error
	if x.uev != nil {
		errs = append(errs, x.uev.Close())
	}
	for _, c := range []*packet.Conn{x.port, x.answers, x.early} {
		if c != nil {
			closeIdle(c)
		}
	}
	if x.nh != nil {
		x.nh.Close()
	}
	if x.bh != nil {
		x.bh.Close()
	}
	for _, ns := range []netns.NsHandle{x.ns, x.home} {
		if ns.IsOpen() {
			errs = append(errs, ns.Close())
		}
	}
	return errors.Join(errs...)
}

// makePrivate runs on the private thread, in the new namespace: its
// handle, netlink there, the uevent socket (which must exist before the
// ipvtap: its device number comes in a uevent there, see openQueues) and
// the lowest index the ipvtap may have there (ivIndex: one above the
// links the namespace came with, its loopback and the fallback tunnels
// some modules make in every namespace; see addIPVtap).
func (x *guest) makePrivate() error {
	ns, err := netns.Get()
	if err != nil {
		return err
	}
	x.ns = ns
	// Without the socket, the number is read from a sysfs of the namespace.
	x.uev, _ = chardev.OpenUevents()
	if x.nh, err = hostnet.NewHandle(); err != nil {
		return err
	}
	links, err := hostnet.RetryDump(x.nh.LinkList)
	if err != nil {
		return fmt.Errorf("the links of vmrun's private network namespace: %w", err)
	}
	for _, l := range links {
		x.ivIndex = max(x.ivIndex, l.Attrs().Index)
	}
	x.ivIndex++
	return nil
}

// makeNetns waits for the private namespace (startPrivate) and makes
// netlink in vmrun's namespace, for the services.
func (x *guest) makeNetns(*hostnet.Setup) error {
	var err error
	if x.bh, err = hostnet.NewHandle(); err != nil {
		return err
	}
	return <-x.made
}

// inPrivate runs fn in the private namespace on the calling goroutine's
// thread, which is in vmrun's (the set-up's, or a service's in InNS), and
// returns it there (hostnet.Away).
func (x *guest) inPrivate(fn func() error) error {
	return hostnet.Away(x.home, func() error {
		if err := netns.Set(x.ns); err != nil {
			return fmt.Errorf("enter vmrun's private network namespace: %w", err)
		}
		return nil
	}, fn)
}

// create creates the ipvtap on the parent, in the private namespace, in
// L2 mode with the bridge flag, from netlink.NewLinkAttrs (a literal
// LinkAttrs{} would give it a 0-slot queue that drops every frame to the
// guest). The device group nonce proves which sysfs shows it when its
// uevent did not come (chardev.TapDevNum); it stays, as nothing reads a
// link's group in the private namespace. Then the private thread opens the
// sockets on it (openSockets).
func (x *guest) create(s *hostnet.Setup) error {
	nonce, err := chardev.GroupNonce()
	if err != nil {
		return err
	}
	x.nonce = nonce
	if x.link, err = x.addLink(s.H, s.Cfg.LinkName, nonce, newIPVtap); err != nil {
		return ipvlanAddError(x.parent, err)
	}
	s.Link = x.link
	l := x.link
	s.OnUndo(func() error {
		if err := x.nh.LinkDel(l); err != nil && !hostnet.IsNotFound(err) {
			return fmt.Errorf("delete %s in vmrun's private network namespace: %w", l.Attrs().Name, err)
		}
		return nil
	})
	a := *l.Attrs()
	x.sockets = x.thread.Go(func() error { return x.openSockets(&a) })
	return nil
}

// newIPVtap is the ipvtap asked for: L2 with the bridge flag.
func newIPVtap(la netlink.LinkAttrs) netlink.Link {
	return &netlink.IPVtap{IPVlan: netlink.IPVlan{LinkAttrs: la, Mode: netlink.IPVLAN_MODE_L2, Flag: netlink.IPVLAN_FLAG_BRIDGE}}
}

// addLink adds the link mk makes (newIPVtap) on the parent, from vmrun's
// namespace (h) into the private one, at an index free in both, so that
// neither netlink's code nor vmrun's looks it up: a kernel looks a
// request's index up in the namespace the request comes from (6.1) or in
// the one the link is made in (6.18), and an existing link there is the
// one asked for (EEXIST; nothing else makes links in the private
// namespace). Should a link of vmrun's namespace have taken the index
// since lookupParent's dump, the kernel picks one, and the link is looked
// up in the private namespace. It returns the link as seen there.
func (x *guest) addLink(h *netlink.Handle, name string, nonce uint32, mk func(netlink.LinkAttrs) netlink.Link) (netlink.Link, error) {
	la := netlink.NewLinkAttrs()
	la.Name, la.Index, la.ParentIndex, la.Group = name, max(x.ivIndex, x.hostMax+1), x.parentIx, nonce
	la.Namespace = netlink.NsFd(x.ns)
	err := h.LinkAdd(mk(la))
	if errors.Is(err, unix.EEXIST) {
		la.Index = 0
		if err = h.LinkAdd(mk(la)); err == nil {
			return x.nh.LinkByName(name)
		}
	}
	if err != nil {
		return nil, err
	}
	la.Namespace = nil
	return mk(la), nil
}

// openSockets runs on the private thread once the ipvtap exists: the
// socket vmrun answers the guest's DHCP on (openAnswerSocket), and the
// learner's first one (listenLearner), both in the private namespace.
// makeDHCPPort waits for them.
func (x *guest) openSockets(a *netlink.LinkAttrs) error {
	var err error
	if x.answers, err = openAnswerSocket(a); err != nil {
		return fmt.Errorf("the guest's DHCP port: %w", err)
	}
	x.early, err = x.listenLearner(a)
	return err
}

// ipvlanAddError explains the kernel's refusals of an ipvlan link.
func ipvlanAddError(parent string, err error) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		return hostnet.Refuse(hostnet.ErrUnsuitable, "the kernel refused an ipvlan link on %s (EBUSY): it carries a macvlan or macvtap link (perhaps in another network namespace) or belongs to a bridge or bond, and ipvlan cannot share it; remove that, or use --net routed", parent)
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EAFNOSUPPORT):
		return hostnet.Refuse(hostnet.ErrNoKernelSupport, "this kernel cannot create ipvlan/ipvtap links (%v): load the ipvtap module (modprobe ipvtap), or use --net routed", err)
	}
	return err
}

// silenceIPv6 keeps the private namespace's IPv6 from making addresses of
// its own on the ipvtap (vmrun adds the guest's, see register).
func (x *guest) silenceIPv6(*hostnet.Setup) error {
	return hostnet.SilenceIPv6Link(x.nh, x.link)
}

// verify re-reads the ipvtap, up, and checks what the kernel made of it,
// its port's mode included (checkIPVtap: another ipvlan link created on
// the parent meanwhile may have switched it).
func (x *guest) verify(s *hostnet.Setup) error {
	l, err := x.nh.LinkByIndex(x.link.Attrs().Index)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Cfg.LinkName, err)
	}
	if iv, ok := l.(*netlink.IPVtap); ok {
		if m := hostnet.IPVlanModeString(iv.Mode, iv.Flag); m != hostnet.IPVtapPortMode {
			return x.modeError(m)
		}
	}
	if err := checkIPVtap(l, x.guestMAC, hostnet.OwnerAlias(s.Cfg.VM)); err != nil {
		return err
	}
	x.link, s.Link = l, l
	s.Att.MTU = l.Attrs().MTU
	return nil
}

// checkIPVtap compares a re-read ipvtap with what was asked.
func checkIPVtap(l netlink.Link, mac net.HardwareAddr, alias string) error {
	iv, ok := l.(*netlink.IPVtap)
	a := l.Attrs()
	switch {
	case !ok:
		return fmt.Errorf("%w: it is a %s, not an ipvtap", hostnet.ErrVerify, l.Type())
	case hostnet.IPVlanModeString(iv.Mode, iv.Flag) != hostnet.IPVtapPortMode:
		return fmt.Errorf("%w: mode %q, not %q", hostnet.ErrVerify, hostnet.IPVlanModeString(iv.Mode, iv.Flag), hostnet.IPVtapPortMode)
	case !bytes.Equal(a.HardwareAddr, mac):
		return fmt.Errorf("%w: MAC %s, not the parent's %s", hostnet.ErrVerify, a.HardwareAddr, mac)
	case a.TxQLen <= 0:
		return fmt.Errorf("%w: queue length %d (every frame to the guest would be dropped)", hostnet.ErrVerify, a.TxQLen)
	case a.Alias != alias:
		return fmt.Errorf("%w: alias %q, not %q", hostnet.ErrVerify, a.Alias, alias)
	}
	return nil
}

// openQueues opens the ipvtap's character device once per queue. Its
// number is the one the device's uevent gave (chardev.Uevents; the class
// is per namespace, so it went to the private namespace's socket only),
// else read from the private namespace's own sysfs (/sys shows vmrun's
// namespace); the node is opened from vmrun's namespace, so QEMU's fds do
// not keep the private one alive after vmrun.
func (x *guest) openQueues(s *hostnet.Setup) error {
	att := s.Att
	s.OnUndo(func() error { return hostnet.CloseFiles(att.Files) })
	a := x.link.Attrs()
	var dev uint64
	from := "the uevent"
	ok := false
	if x.uev != nil {
		dev, ok = x.uev.TapDevNum("ipvtap", a.Name, a.Index)
		x.uev.Close()
		x.uev = nil
	}
	if !ok {
		err := x.inPrivate(func() error {
			var err error
			dev, from, err = chardev.TapDevNum("ipvtap", a.Name, a.Index, x.nonce)
			return err
		})
		if err != nil {
			return err
		}
	}
	files, node, err := chardev.OpenCharDev(dev, "tap"+strconv.Itoa(a.Index), s.Cfg.Queues)
	if err != nil {
		return err
	}
	s.Trace.ReportEvent(fmt.Sprintf("%s is character device %d:%d (read from %s of vmrun's private namespace), opened through %s", a.Name, unix.Major(dev), unix.Minor(dev), from, node))
	att.Files = files
	return nil
}

// portMode reads the parent's ipvlan port mode through the ipvtap.
func (x *guest) portMode() (string, error) {
	l, err := x.nh.LinkByIndex(x.link.Attrs().Index)
	if err != nil {
		return "", fmt.Errorf("%s: %w", x.link.Attrs().Name, err)
	}
	iv, ok := l.(*netlink.IPVtap)
	if !ok {
		return "", fmt.Errorf("%w: %s is a %s, not an ipvtap", hostnet.ErrVerify, l.Attrs().Name, l.Type())
	}
	return hostnet.IPVlanModeString(iv.Mode, iv.Flag), nil
}

// modeError refuses a port in mode m, not L2.
func (x *guest) modeError(m string) error {
	return hostnet.Refuse(hostnet.ErrVerify, "the ipvlan port of %s is in mode %q, not %q: another ipvlan link on %s switched it (the last one created sets the mode for all), and the guest's ARP and DHCP would be dropped; remove that link or recreate it in L2 mode", x.parent, m, hostnet.IPVtapPortMode, x.parent)
}
