package netsetup

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
	"golang.org/x/sys/unix"
)

// Apply creates what plan p needs and returns the attachment QEMU uses.
// Every kernel object is recorded with rec before it is created (rec may
// be nil when nothing must survive a crash), its undo is registered right
// after, and on any failure everything done so far is undone in reverse
// order: Apply either succeeds or leaves nothing. Links are created in the
// network namespace of the calling thread and carry the alias
// OwnerAlias(p.Name). A leftover link of the same owned name from a crashed
// run of the same VM is deleted first; a same-named link without vmrun's
// alias is refused (ErrForeignLink) and left alone. ctx cancels between
// steps; WithTrace reports them.
func Apply(ctx context.Context, p Plan, rec Recorder) (*Attachment, error) {
	if rec == nil {
		rec = nopRecorder{}
	}
	if ps := processCaps().Missing(p.Mode); len(ps) > 0 {
		return nil, refuse(ErrNoPrivilege, "--net %s needs %s, which vmrun lacks; %s", p.Mode, joinPrivs(ps), privilegeHint(p.Mode))
	}
	switch p.Mode {
	case None:
		return noneAttachment(), nil
	case User:
		if p.Passt != "" {
			return passtAttachment(traceFrom(ctx), p, rec)
		}
		return userAttachment(p), nil
	case Bridge:
		// The tap's MAC is the kernel's until the "host mac" step.
		return applySteps(ctx, p, rec, LinkObject(p.Name, p.LinkName, "tuntap", nil), tapSteps())
	case Macvtap:
		return applySteps(ctx, p, rec, LinkObject(p.Name, p.LinkName, "macvtap", p.MAC), macvtapSteps())
	case Routed:
		return applyRouted(ctx, p, rec)
	case NAT:
		return applySteps(ctx, p, rec, LinkObject(p.Name, p.LinkName, "tuntap", nil), natSteps())
	case IPVtap:
		return applyIPVtap(ctx, p, rec)
	}
	return nil, refuse(ErrUnknownMode, "unknown network mode %q", p.Mode)
}

// nopRecorder records nothing.
type nopRecorder struct{}

func (nopRecorder) Record(rundir.Object) error { return nil }
func (nopRecorder) Forget(rundir.Object) error { return nil }

// step is one named, ordered step of a set-up.
type step struct {
	name string
	do   func(*setup) error
}

// setup is the state of one Apply: the steps done so far and their undos.
type setup struct {
	ctx   context.Context
	p     Plan
	rec   Recorder
	trace *Trace
	h     *netlink.Handle
	obj   rundir.Object // the link's record
	noun  string        // "tap", "macvtap": names the object in errors
	undo  []func() error
	att   *Attachment

	parent netlink.Link // the bridge (tap) or the lower device (macvtap)
	link   netlink.Link // the created link, once created
	nonce  uint32       // the macvtap's temporary device group
}

func applySteps(ctx context.Context, p Plan, rec Recorder, obj rundir.Object, steps []step) (*Attachment, error) {
	if err := checkLinkPlan(p); err != nil {
		return nil, err
	}
	// All steps run on one thread: netlink requests, the tap ioctls and the
	// sysfs check must see the same network namespace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer raiseFor(p.Mode)()
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	s := &setup{ctx: ctx, p: p, rec: rec, trace: traceFrom(ctx), h: h, obj: obj, noun: nounOf(obj),
		att: &Attachment{Backend: "tap", MAC: append(net.HardwareAddr(nil), p.MAC...), LinkName: p.LinkName}}
	s.undo = append(s.undo, func() error { h.Close(); return nil })
	for _, st := range steps {
		if err := s.ctx.Err(); err != nil {
			return nil, s.fail(st.name, err)
		}
		if err := st.do(s); err != nil {
			return nil, s.fail(st.name, err)
		}
		s.trace.step(st.name)
	}
	s.att.Undo = sync.OnceValue(func() error { return privileged(s.unwind) })
	return s.att, nil
}

// raiseFor raises, on the calling (locked) thread, only the capabilities
// the set-up of mode needs (Needs), and returns the function that lowers
// them: a member's bridge set-up runs with CAP_NET_ADMIN alone.
func raiseFor(m Mode) (lower func()) {
	var cs []int
	for _, p := range Needs(m) {
		cs = append(cs, p.Number())
	}
	return caps.Raise(cs...)
}

func nounOf(o rundir.Object) string {
	if o.Detail["type"] == "tuntap" {
		return "tap"
	}
	return o.Detail["type"]
}

// checkLinkPlan refuses a plan Apply cannot carry out.
func checkLinkPlan(p Plan) error {
	switch {
	case p.Name == "":
		return refuse(ErrBadRequest, "the plan has no VM name")
	case p.LinkName == "" || len(p.LinkName) > 15:
		return refuse(ErrBadRequest, "the plan's link name %q is not a valid interface name", p.LinkName)
	case p.Parent == "":
		return refuse(ErrBadRequest, "the %s plan has no parent interface", p.Mode)
	case len(p.MAC) != 6:
		return refuse(ErrBadRequest, "the plan's MAC %q is not valid", p.MAC)
	case p.Queues < 1 || p.Queues > MaxQueues:
		return refuse(ErrBadRequest, "the plan asks for %d queues; use 1 to %d", p.Queues, MaxQueues)
	}
	return nil
}

// onUndo registers the undo of the step just done.
func (s *setup) onUndo(f func() error) { s.undo = append(s.undo, f) }

// fail names the failed step and unwinds everything done so far.
func (s *setup) fail(stepName string, err error) error {
	var se *sentenceError
	if !errors.As(err, &se) {
		err = fmt.Errorf("%s: %w", stepName, err)
	}
	err = fmt.Errorf("%s %q on %q: %w", s.noun, s.p.LinkName, s.p.Parent, err)
	if uerr := s.unwind(); uerr != nil {
		return errors.Join(err, fmt.Errorf("undoing it: %w", uerr))
	}
	return err
}

// unwind runs the registered undos in reverse order, once.
func (s *setup) unwind() error {
	var errs []error
	for i := len(s.undo) - 1; i >= 0; i-- {
		errs = append(errs, s.undo[i]())
	}
	s.undo = nil
	return errors.Join(errs...)
}

// lookupParent finds the parent link and checks that it is up (facts
// may have changed since Detect).
func (s *setup) lookupParent() error {
	l, err := s.h.LinkByName(s.p.Parent)
	if isNotFound(err) {
		return refuse(ErrNoInterface, "interface %s does not exist (any more)", s.p.Parent)
	}
	if err != nil {
		return err
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return refuse(ErrLinkDown, "%s is down; bring it up (ip link set %s up)", s.p.Parent, s.p.Parent)
	}
	s.parent = l
	return nil
}

// claimName makes the owned name free: a leftover of a crashed run of the
// same VM (it carries our alias) is deleted; anything else is refused.
func (s *setup) claimName() error {
	l, err := s.h.LinkByName(s.p.LinkName)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if owns(s.obj, l) != nil {
		return refuse(ErrForeignLink, "a link named %s already exists and is not vmrun's (its alias is %q, not %q); vmrun leaves it alone: delete it or rename the VM",
			s.p.LinkName, l.Attrs().Alias, OwnerAlias(s.p.Name))
	}
	if err := s.h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete stale %s left by a previous run: %w", s.p.LinkName, err)
	}
	s.trace.event(fmt.Sprintf("deleted stale link %s left by a previous run of %s", s.p.LinkName, s.p.Name))
	return nil
}

// record writes the link to the state before it exists and registers its
// removal: delete it if it is there and ours, then forget it.
func (s *setup) record() error {
	obj, h, rec := s.obj, s.h, s.rec
	if err := rec.Record(obj); err != nil {
		return err
	}
	s.onUndo(func() error {
		if err := deleteOwnedLink(h, obj); err != nil {
			return err
		}
		return rec.Forget(obj)
	})
	return nil
}

// setAlias labels the new link as the VM's (the kernel ignores an alias
// given at creation).
func (s *setup) setAlias() error { return s.h.LinkSetAlias(s.link, OwnerAlias(s.p.Name)) }

// silenceIPv6 keeps the host's IPv6 off the new link before it comes up
// (address generation mode "none"): the host has no business on the
// guest's link, and would otherwise send DAD, MLD and router solicitations
// onto the LAN with the guest's MAC, claim the guest's EUI-64 link-local
// address, and hold the rtnl lock doing so. Without IPv6 in the kernel
// there is nothing to silence.
func (s *setup) silenceIPv6() error {
	err := s.h.LinkSetIP6AddrGenMode(s.link, nl.IN6_ADDR_GEN_MODE_NONE)
	if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return err
}

// openVhost opens /dev/vhost-net once per queue when the plan asks for it.
func (s *setup) openVhost() error {
	if !s.p.Vhost {
		return nil
	}
	att := s.att
	s.onUndo(func() error { return closeFiles(att.VhostFiles) })
	for i := 0; i < s.p.Queues; i++ {
		f, err := os.OpenFile("/dev/vhost-net", os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("vhost-net for queue %d: %w", i, err)
		}
		att.VhostFiles = append(att.VhostFiles, f)
	}
	return nil
}
