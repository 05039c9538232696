package tap

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/chardev"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// Macvtap is --net macvtap: a macvtap link in bridge mode on a wired
// parent, with the guest's MAC, whose character device's queues QEMU uses.
type Macvtap struct {
	Link hostnet.LinkConfig // Parent is the lower device
	Caps []int              // the capabilities to raise (internal/caps numbers)
	// HostLink is the owned name of the host link (see hostlink_linux.go);
	// "" with --no-host-link: the host cannot reach the guest.
	HostLink string
}

// Attach creates the macvtap (see hostnet.Run).
func (m Macvtap) Attach(ctx context.Context, rec hostnet.Recorder) (*hostnet.Attachment, error) {
	obj := hostnet.LinkObject(m.Link.VM, m.Link.LinkName, "macvtap", m.Link.MAC)
	return hostnet.Run(ctx, m.Link, rec, obj, m.Caps, macvtapSteps(&hostLink{name: m.HostLink}))
}

// macvtapSteps are the steps of --net macvtap, with host link hl.
func macvtapSteps(hl *hostLink) []hostnet.Step {
	return []hostnet.Step{
		{Name: "parent", Do: (*hostnet.Setup).LookupParent},
		{Name: "claim name", Do: (*hostnet.Setup).ClaimName},
		{Name: "record", Do: (*hostnet.Setup).Record},
		{Name: "create", Do: createMacvtap},
		{Name: "alias", Do: (*hostnet.Setup).SetAlias},
		{Name: "ipv6 off", Do: (*hostnet.Setup).SilenceIPv6},
		{Name: "verify", Do: verifyMacvtap},
		{Name: "open queues", Do: openMacvtapQueues},
		{Name: "reset group", Do: func(s *hostnet.Setup) error { return s.H.LinkSetGroup(s.Link, 0) }},
		{Name: "up", Do: (*hostnet.Setup).SetUp},
		{Name: "open vhost", Do: (*hostnet.Setup).OpenVhost},
		{Name: "host link", Do: hl.create},
		{Name: "host link up", Do: hl.up},
		{Name: "watch addresses", Do: func(s *hostnet.Setup) error { return watchAddrs(s, hl.follow) }},
	}
}

// createMacvtap creates the macvtap in bridge mode, down, with the guest's
// MAC. It starts from netlink.NewLinkAttrs: a literal LinkAttrs{} would send
// TxQLen 0, and a macvtap with a 0-slot queue drops every frame to the
// guest. The alias cannot be given here: the kernel ignores IFLA_IFALIAS
// when it creates a link. The device group is a random nonce until the
// queues are open: it proves which sysfs shows this very link (chardev.TapDevNum).
func createMacvtap(s *hostnet.Setup) error {
	nonce, err := chardev.GroupNonce()
	if err != nil {
		return err
	}
	s.Nonce = nonce
	la := netlink.NewLinkAttrs()
	la.Group = nonce
	la.Name = s.Cfg.LinkName
	la.ParentIndex = s.ParentLink.Attrs().Index
	la.HardwareAddr = s.Cfg.MAC
	mv := &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}}
	if err := s.H.LinkAdd(mv); err != nil {
		return err
	}
	s.Link = mv
	return nil
}

// verifyMacvtap re-reads the link (netlink does not fill in what the
// kernel chose) and checks that the kernel applied what was asked.
func verifyMacvtap(s *hostnet.Setup) error {
	l, err := s.H.LinkByName(s.Cfg.LinkName)
	if err != nil {
		return err
	}
	s.Link = l
	if err := checkMacvtap(l, s.ParentLink.Attrs().Index, s.Cfg.MAC, hostnet.OwnerAlias(s.Cfg.VM)); err != nil {
		return err
	}
	s.Att.MTU = l.Attrs().MTU
	return nil
}

// checkMacvtap compares a re-read macvtap with what was asked.
func checkMacvtap(l netlink.Link, parent int, mac net.HardwareAddr, alias string) error {
	mv, ok := l.(*netlink.Macvtap)
	a := l.Attrs()
	switch {
	case !ok:
		return fmt.Errorf("%w: it is a %s, not a macvtap", hostnet.ErrVerify, l.Type())
	case mv.Mode != netlink.MACVLAN_MODE_BRIDGE:
		return fmt.Errorf("%w: mode %d, not bridge", hostnet.ErrVerify, mv.Mode)
	case !bytes.Equal(a.HardwareAddr, mac):
		return fmt.Errorf("%w: MAC %s, not %s", hostnet.ErrVerify, a.HardwareAddr, mac)
	case a.TxQLen <= 0:
		return fmt.Errorf("%w: queue length %d (every frame to the guest would be dropped)", hostnet.ErrVerify, a.TxQLen)
	case a.Alias != alias:
		return fmt.Errorf("%w: alias %q, not %q", hostnet.ErrVerify, a.Alias, alias)
	case a.ParentIndex != parent:
		return fmt.Errorf("%w: parent #%d, not #%d", hostnet.ErrVerify, a.ParentIndex, parent)
	}
	return nil
}

// openMacvtapQueues opens the macvtap's character device once per queue.
func openMacvtapQueues(s *hostnet.Setup) error {
	att := s.Att
	s.OnUndo(func() error { return hostnet.CloseFiles(att.Files) })
	a := s.Link.Attrs()
	dev, from, err := chardev.TapDevNum("macvtap", a.Name, a.Index, s.Nonce)
	if err != nil {
		return err
	}
	files, node, err := chardev.OpenCharDev(dev, "tap"+strconv.Itoa(a.Index), s.Cfg.Queues)
	if err != nil {
		return err
	}
	s.Trace.ReportEvent(fmt.Sprintf("%s is character device %d:%d (read from %s), opened through %s", a.Name, unix.Major(dev), unix.Minor(dev), from, node))
	att.Files = files
	return nil
}
