// Package tap is the network modes that put the guest on a link of the
// host's LAN segment: --net bridge (a tap on an existing bridge) and
// --net macvtap (a macvtap on a wired interface).
package tap

import (
	"context"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Bridge is --net bridge: a non-persistent multiqueue tap on an existing
// bridge (hostnet.BridgeTapSteps).
type Bridge struct {
	Link hostnet.LinkConfig // Parent is the bridge
	Caps []int              // the capabilities to raise (internal/caps numbers)
	// HostRoutes: when the bridge has no IPv4 (IPv6) address of the
	// host's, route the guest's IPv4 (IPv6) addresses through it (see
	// hostLink.onBridge).
	HostRoutes bool
}

// Attach creates the tap (see hostnet.Run). The tap's MAC is the kernel's
// until the "host mac" step, so its record has none.
func (b Bridge) Attach(ctx context.Context, rec hostnet.Recorder) (*hostnet.Attachment, error) {
	obj := hostnet.LinkObject(b.Link.VM, b.Link.LinkName, "tuntap", nil)
	var follow func(hostnet.GuestAddr)
	steps := hostnet.BridgeTapSteps()
	if b.HostRoutes {
		hl := &hostLink{}
		steps = append(steps, hostnet.Step{Name: "host routes", Do: hl.onBridge})
		follow = hl.follow
	}
	return hostnet.Run(ctx, b.Link, rec, obj, b.Caps, append(steps, hostnet.Step{Name: "watch addresses", Do: func(s *hostnet.Setup) error { return watchAddrs(s, follow) }}))
}
