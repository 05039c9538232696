package netsetup

import (
	"context"

	"github.com/vmrun/vmrun/netsetup/internal/detect"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/ipvtap"
	"github.com/vmrun/vmrun/netsetup/nat"
	"github.com/vmrun/vmrun/netsetup/routed"
	"github.com/vmrun/vmrun/netsetup/tap"
	"github.com/vmrun/vmrun/netsetup/user"
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
		rec = hostnet.NopRecorder{}
	}
	if ps := missingPrivs(detect.ProcessCaps(), p.Mode); len(ps) > 0 {
		return nil, hostnet.Refuse(ErrNoPrivilege, "--net %s needs %s, which vmrun lacks; %s", p.Mode, joinPrivs(ps), privilegeHint(p.Mode))
	}
	a, err := attacher(p)
	if err != nil {
		return nil, err
	}
	return a.Attach(ctx, rec)
}

// attacher converts plan p into the set-up of its mode, with the narrow
// configuration that mode takes.
func attacher(p Plan) (hostnet.Attacher, error) {
	switch p.Mode {
	case None:
		return attachFunc(func(context.Context, Recorder) (*Attachment, error) { return noneAttachment(), nil }), nil
	case User:
		return user.Config{VM: p.Name, MAC: p.MAC, Forwards: p.Forwards, Passt: p.Passt, RuntimeRoot: p.RuntimeRoot}, nil
	case Bridge, Macvtap:
		if err := checkLinkPlan(p); err != nil {
			return nil, err
		}
		if p.Mode == Bridge {
			return tap.Bridge{Link: linkConfig(p), Caps: capsFor(p.Mode), HostRoutes: !p.NoHostLink}, nil
		}
		m := tap.Macvtap{Link: linkConfig(p), Caps: capsFor(p.Mode)}
		if !p.NoHostLink {
			m.HostLink = LinkNameGen(p.Name, RoleShim, p.Gen)
		}
		return m, nil
	case Routed:
		return routedConfig(p)
	case NAT:
		return natConfig(p)
	case IPVtap:
		return ipvtapConfig(p)
	}
	return nil, hostnet.Refuse(ErrUnknownMode, "unknown network mode %q", p.Mode)
}

// routedConfig checks a routed plan and converts it.
func routedConfig(p Plan) (routed.Config, error) {
	if err := checkRoutedPlan(p); err != nil {
		return routed.Config{}, err
	}
	if err := checkLinkPlan(p); err != nil {
		return routed.Config{}, err
	}
	c := routed.Config{Link: linkConfig(p), Caps: capsFor(p.Mode)}
	if p.GuestAddr == GuestAddrStatic {
		c.GuestIP = p.GuestIP
	}
	return c, nil
}

// ipvtapConfig checks an ipvtap plan and converts it.
func ipvtapConfig(p Plan) (ipvtap.Config, error) {
	if err := checkLinkPlan(p); err != nil {
		return ipvtap.Config{}, err
	}
	c := ipvtap.Config{Link: linkConfig(p), Caps: capsFor(p.Mode), GuestIP: p.GuestIP, Gateway: p.Gateway}
	if !p.NoHostLink {
		c.ShimName = LinkNameGen(p.Name, RoleShim, p.Gen)
	}
	return c, nil
}

// attachFunc is a set-up still in this package as a hostnet.Attacher.
type attachFunc func(ctx context.Context, rec Recorder) (*Attachment, error)

// Attach calls f.
func (f attachFunc) Attach(ctx context.Context, rec Recorder) (*Attachment, error) {
	return f(ctx, rec)
}

// linkConfig is the part of p that the shared link steps use.
func linkConfig(p Plan) hostnet.LinkConfig {
	return hostnet.LinkConfig{VM: p.Name, LinkName: p.LinkName, Parent: p.Parent, MAC: p.MAC, Queues: p.Queues, Vhost: p.Vhost}
}

// capsFor lists the capabilities the set-up of mode m needs (Needs): a
// member's bridge set-up runs with CAP_NET_ADMIN alone.
func capsFor(m Mode) []int {
	var cs []int
	for _, p := range Needs(m) {
		cs = append(cs, p.Number())
	}
	return cs
}

// checkLinkPlan refuses a plan Apply cannot carry out.
func checkLinkPlan(p Plan) error {
	switch {
	case p.Name == "":
		return hostnet.Refuse(ErrBadRequest, "the plan has no VM name")
	case p.LinkName == "" || len(p.LinkName) > 15:
		return hostnet.Refuse(ErrBadRequest, "the plan's link name %q is not a valid interface name", p.LinkName)
	case p.Parent == "":
		return hostnet.Refuse(ErrBadRequest, "the %s plan has no parent interface", p.Mode)
	case len(p.MAC) != 6:
		return hostnet.Refuse(ErrBadRequest, "the plan's MAC %q is not valid", p.MAC)
	case p.Queues < 1 || p.Queues > MaxQueues:
		return hostnet.Refuse(ErrBadRequest, "the plan asks for %d queues; use 1 to %d", p.Queues, MaxQueues)
	}
	return nil
}

// natConfig converts a NAT plan into package nat's configuration. The NAT
// network's state lives under the plan's runtime root.
func natConfig(p Plan) (hostnet.Attacher, error) {
	if err := checkLinkPlan(p); err != nil {
		return nil, err
	}
	if p.NAT == nil {
		return nil, hostnet.Refuse(ErrBadRequest, "the nat plan has no NAT options")
	}
	if p.RuntimeRoot == "" {
		return nil, hostnet.Refuse(ErrBadRequest, "the nat plan has no runtime root for the NAT network's state")
	}
	return nat.Config{Link: linkConfig(p), Caps: capsFor(p.Mode), Root: p.RuntimeRoot,
		Subnet: p.NAT.Subnet, ResolvConf: p.NAT.ResolvConf, Forwards: p.Forwards}, nil
}
