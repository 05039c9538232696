package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/undo"
	"golang.org/x/sys/unix"
)

// LinkConfig is what the shared steps know of the link a mode creates for
// the guest: the narrow part of a plan every link-making mode has.
type LinkConfig struct {
	VM       string           // the VM's name; its links carry OwnerAlias(VM)
	LinkName string           // the owned link's name
	Parent   string           // the bridge, lower device or uplink
	MAC      net.HardwareAddr // the guest NIC's MAC
	Queues   int              // queue fds to open
	Vhost    bool             // open /dev/vhost-net once per queue
}

// Step is one named, ordered step of a set-up.
type Step struct {
	Name string
	Do   func(*Setup) error
}

// Setup is the state of one set-up: its configuration, the netlink handle
// its steps share, and the undos of the steps done so far.
type Setup struct {
	Ctx   context.Context
	Cfg   LinkConfig
	Rec   Recorder
	Trace *Trace
	H     *netlink.Handle
	Obj   rundir.Object // the link's record
	Noun  string        // "tap", "macvtap": names the object in errors
	Att   *Attachment

	ParentLink netlink.Link // the bridge (tap) or the lower device (macvtap)
	Link       netlink.Link // the created link, once created
	Nonce      uint32       // the macvtap's temporary device group

	undo undo.Stack
	step string // the step running, which names the undos it registers
}

// Run carries out steps in order on one locked thread with the
// capabilities raise (numbers, see internal/caps) raised: netlink
// requests, tap ioctls and sysfs checks must all see the same network
// namespace. The link's record is obj. Each step registers its undo right
// after it acted; on any failure (or ctx's cancellation between steps)
// everything done so far is undone in reverse order, so Run either returns
// the attachment or leaves nothing. The attachment's Undo runs the undos
// once, with vmrun's capabilities raised.
func Run(ctx context.Context, cfg LinkConfig, rec Recorder, obj rundir.Object, raise []int, steps []Step) (*Attachment, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer caps.Raise(raise...)()
	h, err := NewHandle()
	if err != nil {
		return nil, err
	}
	s := &Setup{Ctx: ctx, Cfg: cfg, Rec: rec, Trace: TraceFrom(ctx), H: h, Obj: obj, Noun: nounOf(obj),
		Att: &Attachment{Backend: "tap", MAC: append(net.HardwareAddr(nil), cfg.MAC...), LinkName: cfg.LinkName}}
	s.undo.Push("netlink socket", func() error { h.Close(); return nil })
	for _, st := range steps {
		s.step = st.Name
		if err := s.Ctx.Err(); err != nil {
			return nil, s.fail(st.Name, err)
		}
		if err := st.Do(s); err != nil {
			return nil, s.fail(st.Name, err)
		}
		s.Trace.ReportStep(st.Name)
	}
	s.Att.Undo = sync.OnceValue(func() error {
		return Privileged(func() error {
			err := s.undo.Unwind()
			s.stopServices()
			return err
		})
	})
	return s.Att, nil
}

func nounOf(o rundir.Object) string {
	if o.Detail["type"] == "tuntap" {
		return "tap"
	}
	return o.Detail["type"]
}

// OnUndo registers the undo of the step just done.
func (s *Setup) OnUndo(f func() error) { s.undo.Push(s.step, f) }

// fail names the failed step and unwinds everything done so far.
func (s *Setup) fail(stepName string, err error) error {
	var se *SentenceError
	if !errors.As(err, &se) {
		err = fmt.Errorf("%s: %w", stepName, err)
	}
	err = fmt.Errorf("%s %q on %q: %w", s.Noun, s.Cfg.LinkName, s.Cfg.Parent, err)
	uerr := s.undo.Unwind()
	s.stopServices()
	if uerr != nil {
		return errors.Join(err, fmt.Errorf("undoing it: %w", uerr))
	}
	return err
}

// LookupParent finds the parent link and checks that it is up (facts
// may have changed since Detect).
func (s *Setup) LookupParent() error {
	l, err := s.H.LinkByName(s.Cfg.Parent)
	if IsNotFound(err) {
		return Refuse(ErrNoInterface, "interface %s does not exist (any more)", s.Cfg.Parent)
	}
	if err != nil {
		return err
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return Refuse(ErrLinkDown, "%s is down; bring it up (ip link set %s up)", s.Cfg.Parent, s.Cfg.Parent)
	}
	s.ParentLink = l
	return nil
}

// ClaimName makes the owned name free: a leftover of a crashed run of the
// same VM (it carries our alias) is deleted; anything else is refused.
func (s *Setup) ClaimName() error { return s.ClaimLink(s.Cfg.LinkName, s.Obj) }

// ClaimLink is ClaimName for another owned link of the set-up: name, with
// record obj.
func (s *Setup) ClaimLink(name string, obj rundir.Object) error {
	l, err := s.H.LinkByName(name)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if Owns(obj, l) != nil {
		return Refuse(ErrForeignLink, "a link named %s already exists and is not vmrun's (its alias is %q, not %q); vmrun leaves it alone: delete it or rename the VM",
			name, l.Attrs().Alias, OwnerAlias(s.Cfg.VM))
	}
	if err := s.H.LinkDel(l); err != nil && !IsNotFound(err) {
		return fmt.Errorf("delete stale %s left by a previous run: %w", name, err)
	}
	s.Trace.ReportEvent(fmt.Sprintf("deleted stale link %s left by a previous run of %s", name, s.Cfg.VM))
	return nil
}

// Record writes the link to the state before it exists and registers its
// removal: delete it if it is there and ours, then forget it.
func (s *Setup) Record() error { return s.RecordLink(s.Obj, nil) }

// RecordLink records obj, an owned link about to be made, and registers
// its removal: delete it if it is there and ours, call gone (if not nil:
// the link's routes and neighbour entries went with it), then forget it.
func (s *Setup) RecordLink(obj rundir.Object, gone func()) error {
	h, rec := s.H, s.Rec
	if err := rec.Record(obj); err != nil {
		return err
	}
	s.OnUndo(func() error {
		if err := DeleteOwnedLink(h, obj); err != nil {
			return err
		}
		if gone != nil {
			gone()
		}
		return rec.Forget(obj)
	})
	return nil
}

// AddRecorded records obj, creates it with add and registers remove as
// its undo. An object that add could not create is forgotten again and
// not removed: it may be someone else's (EEXIST).
func (s *Setup) AddRecorded(obj rundir.Object, add, remove func() error) error {
	if err := s.Rec.Record(obj); err != nil {
		return err
	}
	if err := add(); err != nil {
		return errors.Join(err, s.Rec.Forget(obj))
	}
	s.OnUndo(remove)
	return nil
}

// SetAlias labels the new link as the VM's (the kernel ignores an alias
// given at creation).
func (s *Setup) SetAlias() error { return s.H.LinkSetAlias(s.Link, OwnerAlias(s.Cfg.VM)) }

// SilenceIPv6 keeps the host's IPv6 off the new link before it comes up
// (see SilenceIPv6Link).
func (s *Setup) SilenceIPv6() error { return SilenceIPv6Link(s.H, s.Link) }

// SilenceIPv6Link sets address generation mode "none" on l: the host has
// no business on the guest's link, and would otherwise send DAD, MLD and
// router solicitations onto the LAN with the guest's MAC, claim the
// guest's EUI-64 link-local address, and hold the rtnl lock doing so.
// Without IPv6 in the kernel there is nothing to silence.
func SilenceIPv6Link(h *netlink.Handle, l netlink.Link) error {
	err := h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE)
	if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return err
}

// SetUp brings the new link up.
func (s *Setup) SetUp() error { return s.H.LinkSetUp(s.Link) }

// OpenVhost opens /dev/vhost-net once per queue when the plan asks for it.
func (s *Setup) OpenVhost() error {
	if !s.Cfg.Vhost {
		return nil
	}
	att := s.Att
	s.OnUndo(func() error { return CloseFiles(att.VhostFiles) })
	for i := 0; i < s.Cfg.Queues; i++ {
		f, err := os.OpenFile("/dev/vhost-net", os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("vhost-net for queue %d: %w", i, err)
		}
		att.VhostFiles = append(att.VhostFiles, f)
	}
	return nil
}
