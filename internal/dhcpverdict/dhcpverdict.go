// Package dhcpverdict is --net auto's check of a layer-2 choice (bridge,
// macvtap): the LAN must answer the guest's DHCP. The guest's DISCOVERs
// are seen by the watcher of its addresses (Trace.Discover), the LAN's ACK
// to it as an address (Trace.Addr, source dhcp). The verdict "no answer"
// needs both: at least Discovers DISCOVERs and Wait since the first one
// without an ACK — several of the guest's retries (udhcpc sends one every
// 3 s, dhclient and systemd-networkd back off from 1-4 s), so one lost
// frame does not move the guest. A guest with a static address or without
// a DHCP client sends no DISCOVER and gets no verdict.
package dhcpverdict

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmrun/vmrun/netsetup"
)

// The verdict's bounds.
const (
	Wait      = 10 * time.Second
	Discovers = 3
)

// Verifier holds the DHCP verdict of one attachment. Its zero value is
// disarmed: it counts nothing until Arm.
type Verifier struct {
	mu        sync.Mutex
	armed     bool
	discovers int
	first     time.Time
	timer     *time.Timer
	wait      time.Duration // Wait
	need      int           // Discovers
	fail      func(why string)

	// The probe of the armed attachment (Probe), if any.
	gen       uint64 // counts Arms: a probe's calls for an earlier one are stale
	probeXID  uint32
	probing   bool               // a probe was started for this arm
	stopProbe context.CancelFunc // ends it: the guest's DHCP started, or the arm ended
	refusal   string             // the probe's "no answer", waiting for the guest's first DISCOVER
	move      func(string) bool  // what carries out the refusal
	moving    bool               // the probe's move is under way
	held      bool               // a verdict came during it
}

// Arm starts the verdict with the usual bounds when on is true: fail runs
// (in its own goroutine, once) when the LAN did not answer. Each Arm
// starts afresh — the count of DISCOVERs, the wait — for the attachment
// the guest is on now (a new LAN after a switch), and with on false ends
// the verdict of the one before.
func (v *Verifier) Arm(on bool, fail func(why string)) {
	v.arm(on, Wait, Discovers, fail)
}

func (v *Verifier) arm(on bool, wait time.Duration, need int, fail func(why string)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.disarmLocked()
	v.fail, v.wait, v.need = fail, wait, need
	v.discovers, v.first, v.timer = 0, time.Time{}, nil
	v.probing, v.probeXID, v.moving, v.held = false, 0, false, false
	v.refusal, v.move = "", nil
	v.gen++
	v.armed = on
}

// Discover counts one of the guest's DISCOVERs (transaction id xid). The
// probe's own, sent from the guest's MAC, are not the guest's: they are
// left out by their xid. The guest's first ends a probe still running
// (from there on the guest's own DHCP speaks, and the verdict rules), or
// carries out the refusal of one that ended unanswered (Probe).
func (v *Verifier) Discover(xid uint32) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.armed || (v.probing && xid == v.probeXID) {
		return
	}
	v.endProbeLocked()
	if v.refusal != "" && !v.moving {
		v.moving = true
		go v.carryOut(v.gen, v.refusal, v.move)
	}
	v.discovers++
	if v.discovers == 1 {
		v.first = time.Now()
		v.timer = time.AfterFunc(v.wait, v.expire)
		return
	}
	if v.discovers >= v.need && time.Since(v.first) >= v.wait {
		v.failLocked()
	}
}

// Answered: the LAN gave the guest an address; no verdict is needed.
func (v *Verifier) Answered() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.disarmLocked()
}

func (v *Verifier) expire() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.armed && v.discovers >= v.need && time.Since(v.first) >= v.wait {
		v.failLocked()
	}
}

func (v *Verifier) failLocked() {
	if v.moving {
		v.held = true // the probe's move decides first (Probe)
		return
	}
	why := fmt.Sprintf("no DHCP answer for the guest in %d s, %d DISCOVERs", int(time.Since(v.first).Round(time.Second).Seconds()), v.discovers)
	v.disarmLocked()
	go v.fail(why)
}

func (v *Verifier) disarmLocked() {
	v.armed = false
	v.endProbeLocked()
	if v.timer != nil {
		v.timer.Stop()
	}
}

func (v *Verifier) endProbeLocked() {
	if v.stopProbe != nil {
		v.stopProbe()
		v.stopProbe = nil
	}
}

// Probe starts the probe of the armed attachment (internal/dhcpprobe):
// it returns the context the probe runs in, which ends when the guest's
// own first DISCOVER is seen, when the LAN answers the guest, or when the
// verdict is armed again or ended (a switch); and refused, the probe's
// conclusion that the LAN did not answer. xid is the probe's transaction
// id: its DISCOVERs are not counted as the guest's. ok is false when
// nothing is armed, or a probe was made already (no probe then).
//
// refused (unless the probe's context ended first: a probe cut short
// proves nothing) keeps move for the guest's first DISCOVER, which runs
// it, in its own goroutine: the guest is moved once its system runs, and
// can release its NIC (an eject requested while it is still booting is
// lost, and the swap fails). While move runs, the guest's own verdict
// waits for it; when move reports it did not move the guest (false: the
// probe proved nothing, e.g. the host got no lease either), the verdict
// goes on as if there had been no probe, its count of the guest's
// DISCOVERs and its wait unchanged.
func (v *Verifier) Probe(parent context.Context, xid uint32) (ctx context.Context, refused func(why string, move func(string) bool), ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.armed || v.probing {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(parent)
	v.probing, v.probeXID, v.stopProbe = true, xid, cancel
	gen := v.gen
	refused = func(why string, move func(string) bool) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if ctx.Err() == nil && gen == v.gen {
			v.refusal, v.move = why, move
		}
	}
	return ctx, refused, true
}

// carryOut runs the probe's move for the arm gen.
func (v *Verifier) carryOut(gen uint64, why string, move func(string) bool) {
	moved := move(why)
	v.mu.Lock()
	defer v.mu.Unlock()
	if gen != v.gen {
		return // armed again: by the move's switch, or another's
	}
	v.moving, v.refusal = false, ""
	if !moved && v.held && v.armed {
		v.held = false
		v.failLocked()
	}
}

// Verifies says whether --net auto checks the LAN's DHCP answer for plan:
// its layer-2 modes whose attachment watches the guest's frames.
func Verifies(req netsetup.Mode, plan netsetup.Plan) bool {
	return req == netsetup.Auto && (plan.Mode == netsetup.Macvtap || plan.Mode == netsetup.Bridge) && len(plan.MAC) == 6
}

// LeftBecause is the switch's reason for leaving layer 2 for plan: the
// verdict (why), and what a successful set-up of plan shows about the LAN
// — routed's set-up takes a lease upstream through the host's MAC, so
// once it worked the LAN answers the host and only the guest's MAC is
// refused; on NAT after routed found no lease (before: the earlier
// modes' errors), its DHCP answers neither.
func LeftBecause(why string, plan netsetup.Plan, before []error) string {
	switch {
	case plan.Mode == netsetup.Routed && plan.GuestAddr == netsetup.GuestAddrUpstream:
		return why + "; the LAN answers the host but not the guest: it gave routed's upstream lease through the host's MAC, so it drops MACs it did not assign"
	case plan.Mode == netsetup.NAT && errors.Is(errors.Join(before...), netsetup.ErrNoLease):
		return why + "; the LAN's DHCP answers neither the guest nor the host"
	}
	return why
}
