package hostnet

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TapLinkSteps are the steps that make the guest's plain tap, shared by
// every mode that puts the guest on one (bridge, NAT, routed): a
// non-persistent multiqueue tap, which the kernel removes by itself when
// the last queue fd closes (so a crashed vmrun+QEMU leaves no tap), with
// vmrun's alias, its own MAC, no host IPv6 and the parent's MTU. The
// caller looks the parent up first and brings the tap up after.
func TapLinkSteps() []Step {
	return []Step{
		{"claim name", (*Setup).ClaimName},
		{"record", (*Setup).Record},
		{"create", (*Setup).CreateTap},
		{"alias", (*Setup).SetAlias},
		{"host mac", func(s *Setup) error { return s.H.LinkSetHardwareAddr(s.Link, HostSideMAC(s.Cfg.MAC)) }},
		{"ipv6 off", (*Setup).SilenceIPv6},
		{"mtu", (*Setup).SetTapMTU},
	}
}

// BridgeTapSteps are the steps of a tap on a bridge (--net bridge, and the
// NAT network's bridge): TapLinkSteps on the bridge, which the tap joins
// before it comes up.
func BridgeTapSteps() []Step {
	steps := []Step{{"bridge", (*Setup).LookupBridge}}
	steps = append(steps, TapLinkSteps()...)
	return append(steps,
		Step{"master", func(s *Setup) error { return s.H.LinkSetMasterByIndex(s.Link, s.ParentLink.Attrs().Index) }},
		Step{"up", (*Setup).SetUp},
		Step{"open vhost", (*Setup).OpenVhost},
	)
}

// LookupBridge finds the bridge and checks that it is one and is up.
func (s *Setup) LookupBridge() error {
	if err := s.LookupParent(); err != nil {
		return err
	}
	if _, ok := s.ParentLink.(*netlink.Bridge); !ok {
		return Refuse(ErrNotBridge, "%s is not a bridge (it is a %s); choose a bridge with --net bridge:NAME", s.Cfg.Parent, s.ParentLink.Type())
	}
	return nil
}

// CreateTap creates the tap and its queues; the fds become the
// attachment's Files. Its undo deletes the tap while a queue fd still
// proves it is ours, then closes the fds: closing alone is not enough when
// another goroutine forks meanwhile (the child holds copies of the fds
// until it execs, and the tap lives on until then, without an alias yet).
func (s *Setup) CreateTap() error {
	att, h := s.Att, s.H
	t, files, err := NewTap(h, s.Cfg.LinkName, s.Cfg.Queues)
	if err != nil {
		return err
	}
	att.Files, s.Link = files, t
	s.OnUndo(func() error { return errors.Join(deleteHeldTap(h, t, att.Files), CloseFiles(att.Files)) })
	return nil
}

// deleteHeldTap deletes tap t if one of files is still open and attached
// to it (TUNGETIFF names it); otherwise the recorded link's undo decides.
func deleteHeldTap(h *netlink.Handle, t *netlink.Tuntap, files []*os.File) error {
	for _, f := range files {
		if name, err := tapNameOf(f); err == nil && name == t.Name {
			if err := h.LinkDel(t); err != nil && !IsNotFound(err) {
				return fmt.Errorf("delete tap %s: %w", t.Name, err)
			}
			return nil
		}
	}
	return nil
}

// tapNameOf asks a tap queue fd which link it is attached to.
func tapNameOf(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return "", err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) }); err != nil {
		return "", err
	}
	return ifr.Name(), ioErr
}

// SetTapMTU gives the tap the bridge's MTU before it joins the bridge (a
// port with a larger MTU would not lower the bridge's, but a smaller one would).
func (s *Setup) SetTapMTU() error {
	mtu := s.ParentLink.Attrs().MTU
	s.Att.MTU = mtu
	return s.H.LinkSetMTU(s.Link, mtu)
}

// tapFlags are the TUNSETIFF flags of vmrun's taps: no packet-info header,
// a virtio-net header (QEMU's vnet_hdr), multiqueue when there are queues.
func tapFlags(queues int) netlink.TuntapFlag {
	f := netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR
	if queues > 1 {
		f |= netlink.TUNTAP_MULTI_QUEUE
	}
	return f
}

// NewTap creates tap name exclusively (IFF_TUN_EXCL: a tap that already
// exists under this name is never attached to) through netlink.Tuntap,
// then attaches the remaining queues. The tap is non-persistent.
func NewTap(h *netlink.Handle, name string, queues int) (*netlink.Tuntap, []*os.File, error) {
	la := netlink.NewLinkAttrs()
	la.Name = name
	t := &netlink.Tuntap{
		LinkAttrs:  la,
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      tapFlags(queues) | netlink.TUNTAP_TUN_EXCL,
		Queues:     1,
		NonPersist: true,
	}
	if err := h.LinkAdd(t); err != nil {
		return nil, nil, err
	}
	files := t.Fds
	for i := 1; i < queues; i++ {
		f, err := attachTapQueue(name, uint16(tapFlags(queues))|uint16(netlink.TUNTAP_MODE_TAP))
		if err != nil {
			CloseFiles(files)
			return nil, nil, fmt.Errorf("queue %d: %w", i, err)
		}
		files = append(files, f)
	}
	if t.Index == 0 {
		CloseFiles(files)
		return nil, nil, fmt.Errorf("%w: the new tap %s has no index", ErrVerify, name)
	}
	return t, files, nil
}

// attachTapQueue opens one more queue of multiqueue tap name.
func attachTapQueue(name string, flags uint16) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(flags)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach to tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// HostSideMAC is the tap's own MAC: the guest's with the first byte 0xfe,
// so it is never the lowest MAC on the bridge (a bridge without a fixed MAC
// takes its lowest port MAC, and would change it when the VM leaves).
func HostSideMAC(guest net.HardwareAddr) net.HardwareAddr {
	m := append(net.HardwareAddr(nil), guest...)
	m[0] = 0xfe
	return m
}
