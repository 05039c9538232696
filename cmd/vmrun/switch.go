package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmrun/vmrun/internal/dhcpverdict"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// netState is the session's current attachment while the guest runs:
// switchAttachment replaces it, the undo stack's entries and the
// supervisor's Lost channel follow it.
type netState struct {
	mu       sync.Mutex // held for a whole switch
	att      *netsetup.Attachment
	plan     netsetup.Plan
	switches int
	unwatch  chan struct{} // ends the watch of att's Done

	lost     chan struct{} // closed when the current attachment dies
	lostOnce sync.Once
	lostErr  error
}

// current returns the attachment the guest is on.
func (n *netState) current() *netsetup.Attachment {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.att
}

// watch makes att's death the run's Lost (until the next watch).
func (n *netState) watch(att *netsetup.Attachment) {
	if n.lost == nil {
		n.lost = make(chan struct{})
	}
	if n.unwatch != nil {
		close(n.unwatch)
	}
	stop := make(chan struct{})
	n.unwatch = stop
	go func() {
		select {
		case <-att.Done():
			n.lostOnce.Do(func() { n.lostErr = att.Err(); close(n.lost) })
		case <-stop:
		}
	}()
}

// err explains a closed lost channel.
func (n *netState) err() error { return n.lostErr }

// switchAttachment moves the running guest onto a new attachment for
// plan, in the same QEMU process (see docs/live-uplink.md): it asks the
// guest to eject its NIC and, during the eject, applies plan (its objects
// are recorded in the state file before they are made, beside the old
// attachment's, so a SIGKILL at any moment leaves only what `vmrun gc`
// removes); it plugs a NIC on the new attachment in once the guest has
// released the old one (launcher.Process.SwapNICBuild; the guest keeps
// its MAC when the plan does), then removes the old attachment. A plan
// whose set-up can wait on the network (routed's upstream lease,
// netplan.SetupWaits) is applied before the eject. why is the reason, in
// words, for the one stderr line each switch prints. On an error before
// the new NIC is live the guest stays on the old attachment and the new
// one is undone; once it is live the switch has happened, and the line
// names what of the old could not be removed (the old backend left in
// QEMU, links the state file keeps for `vmrun gc`). event, when not zero,
// is the host's first kernel event of the change: the line says how long
// after it the new NIC was live.
func (s *session) switchAttachment(ctx context.Context, plan netsetup.Plan, why string, event time.Time) error {
	n := &s.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.att == nil || (s.qemu == nil && s.swap == nil) {
		return errors.New("switch: the guest has no attachment yet")
	}
	start := time.Now()
	from := n.plan.Mode
	s.step("network: switching %s → %s (%s)", from, plan.Mode, why)
	// Both attachments exist during the switch: the new one's links
	// take the other generation's names.
	plan = plan.WithGen(n.plan.Gen + 1)
	if plan.RuntimeRoot == "" {
		plan.RuntimeRoot = n.plan.RuntimeRoot
	}
	// The guest's eject of its old NIC, most of a switch under TCG, starts
	// first; the new attachment is made meanwhile (buildAttachment).
	var att *netsetup.Attachment
	build := func() (nic launcher.NIC, err error) {
		if att, err = s.buildAttachment(ctx, plan); err == nil {
			nic = *netplan.NIC(att)
		}
		return nic, err
	}
	shape := netplan.NIC(netsetup.Preview(plan))
	if shape == nil || netplan.SetupWaits(plan) { // not without a NIC for that long
		nic, err := build()
		if err != nil {
			return fmt.Errorf("switch to %s: %w", plan.Mode, err)
		}
		shape, build = &nic, func() (launcher.NIC, error) { return nic, nil }
	}
	// The switch's time ends when the new NIC is live under the guest,
	// before QEMU removes the old backend. From there on the switch has
	// happened: an error after it (the old backend's netdev_del) is left
	// behind, not a failed switch.
	var liveAt time.Time
	live := false
	swap := s.swap // a unit test's fake
	if swap == nil {
		swap = s.qemu.SwapNICBuild
	}
	left := swap(ctx, *shape, build, func() { liveAt, live = time.Now(), true })
	if left != nil && !live {
		if att == nil {
			return fmt.Errorf("switch to %s: %w", plan.Mode, left)
		}
		att.CloseFiles()
		return errors.Join(fmt.Errorf("switch to %s: %w", plan.Mode, left), att.Undo())
	}
	// The new LAN may refuse the guest too: --net auto checks a new
	// layer-2 attachment as it checked the first (and any other ends the
	// check of the old one).
	s.verdict.Arm(dhcpverdict.Verifies(s.spec.NetMode, plan), s.leaveL2)
	// QEMU holds the new fds; the old attachment's go with their links.
	att.CloseFiles()
	old := n.att
	n.att, n.plan = att, plan
	n.switches++
	n.watch(att)
	_ = s.dir.Update(func(st *rundir.State) {
		st.Mode, st.Parent, st.Uplink, st.MAC, st.Switches = string(plan.Mode), plan.Parent, plan.Uplink, plan.MAC.String(), n.switches
		st.Addresses = nil // the guest takes new ones on the new network
	})
	old.CloseFiles()
	if err := old.Undo(); err != nil { // what stays is in the record
		left = errors.Join(left, fmt.Errorf("removing the %s attachment: %w", from, err))
	}
	line := fmt.Sprintf("network: %s → %s (%s); switched in %d ms", from, plan.Mode, why, liveAt.Sub(start).Milliseconds())
	if !event.IsZero() {
		line += fmt.Sprintf(" (%d ms after the host's first network event)", liveAt.Sub(event).Milliseconds())
	}
	if left != nil {
		line += "; left behind: " + oneLine(left.Error()) + " (`vmrun gc` removes it after the VM stops)"
	}
	s.notify("%s", line)
	return nil
}

// swapFunc is launcher.Process.SwapNICBuild's shape (a session's swap).
type swapFunc func(ctx context.Context, shape launcher.NIC, build func() (launcher.NIC, error), live func()) error

// buildAttachment makes plan's attachment (netsetup.Apply), one with a
// NIC backend.
func (s *session) buildAttachment(ctx context.Context, plan netsetup.Plan) (*netsetup.Attachment, error) {
	att, err := netsetup.Apply(netsetup.WithTrace(ctx, s.trace()), plan, s.dir)
	if err == nil && netplan.NIC(att) == nil {
		err = errors.Join(errors.New("no NIC backend"), att.Undo())
		att = nil
	}
	return att, err
}
