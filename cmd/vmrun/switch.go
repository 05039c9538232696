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
// plan, in the same QEMU process (see docs/live-uplink.md): it applies
// plan (its objects are recorded in the state file before they are made,
// beside the old attachment's, so a SIGKILL at any moment leaves only
// what `vmrun gc` removes), replaces the guest's NIC by one on the new
// attachment (launcher.Process.SwapNIC; the guest keeps its MAC when the
// plan does), then removes the old attachment. why is the reason, in
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
	att, err := netsetup.Apply(netsetup.WithTrace(ctx, s.trace()), plan, s.dir)
	if err != nil {
		return fmt.Errorf("switch to %s: %w", plan.Mode, err)
	}
	nic := netplan.NIC(att)
	if nic == nil {
		return errors.Join(fmt.Errorf("switch to %s: no NIC backend", plan.Mode), att.Undo())
	}
	// The switch's time ends when the new NIC is live under the guest,
	// before QEMU removes the old backend. From there on the switch has
	// happened: an error after it (the old backend's netdev_del) is left
	// behind, not a failed switch.
	var liveAt time.Time
	live := false
	swap := s.swap // a unit test's fake
	if swap == nil {
		swap = s.qemu.SwapNICLive
	}
	left := swap(ctx, *nic, func() { liveAt, live = time.Now(), true })
	if left != nil && !live {
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

// swapFunc is launcher.Process.SwapNICLive's shape (a session's swap).
type swapFunc func(ctx context.Context, nic launcher.NIC, live func()) error
