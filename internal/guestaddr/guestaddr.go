// Package guestaddr keeps a running VM's guest addresses: what the
// attachment's services and the guest agent report, recorded in the VM's
// runtime state (for `vmrun ls` and `vmrun wait`), the first one announced
// on stderr, and --wait-address's deadline.
package guestaddr

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// Hooks connect a Book to its run. Each is called when needed, so a hook
// may read what the run sets up later (its runtime directory, its agent).
type Hooks struct {
	// Record stores or (drop) removes an address in the VM's state and
	// reports whether that changed it.
	Record func(a rundir.Address, drop bool) (changed bool, err error)
	// Answered says a DHCP answer reached the guest (--net auto's check
	// of a layer-2 choice).
	Answered func()
	// Kick asks the guest agent again: it may know more.
	Kick func()
	// Step is a --verbose progress line; Notify a line for the user.
	Step, Notify func(string, ...any)
}

// Book is one run's guest addresses. Add and FromAgent may be called from
// the attachment's services and the agent's watcher at the same time.
type Book struct {
	h          Hooks
	first      sync.Once
	got        chan struct{} // closed once the guest has an address
	timedOut   atomic.Bool   // --wait-address passed without one
	agentAddrs []netip.Addr  // what the agent last reported (FromAgent's)
}

// New returns an empty Book.
func New(h Hooks) *Book { return &Book{h: h, got: make(chan struct{})} }

// Add records an address the attachment saw the guest take (or give up)
// and announces the first one. IPv6 link-local addresses are left out: no
// script can use one without its zone, and `vmrun wait` must not return
// one before the guest's real address.
func (b *Book) Add(a netsetup.GuestAddr) {
	if a.Addr.IsLinkLocalUnicast() {
		return
	}
	if a.Source == netsetup.SourceDHCP && !a.Drop {
		b.h.Answered()
	}
	ra := rundir.Address{Addr: a.Addr.String(), Source: a.Source, Learnt: time.Now().UTC()}
	if a.Server.IsValid() {
		ra.Server = a.Server.String()
	}
	changed, err := b.h.Record(ra, a.Drop)
	if err != nil {
		b.h.Step("recording guest address %s: %v", ra.Addr, err)
		return
	}
	if changed && a.Source != netsetup.SourceAgent {
		b.h.Kick() // the agent may know more (e.g. the guest's IPv6 too)
	}
	if !changed || a.Drop {
		return
	}
	b.h.Step("guest address %s (%s)", ra.Addr, netsetup.Evidence(ra.Source, ra.Server))
	b.first.Do(func() {
		b.h.Notify("guest address %s (%s)", ra.Addr, netsetup.Evidence(ra.Source, ra.Server))
		close(b.got)
	})
}

// FromAgent records the agent's answer: the addresses it reports, and
// that those it reported before and no longer does are gone. The agent's
// watcher is its one caller.
func (b *Book) FromAgent(addrs []netip.Addr) {
	for _, a := range b.agentAddrs {
		if !slices.Contains(addrs, a) {
			b.Add(netsetup.GuestAddr{Addr: a, Source: netsetup.SourceAgent, Drop: true})
		}
	}
	for _, a := range addrs {
		b.Add(netsetup.GuestAddr{Addr: a, Source: netsetup.SourceAgent})
	}
	b.agentAddrs = addrs
}

// Deadline calls expired once d has passed, unless the guest had an
// address by then or cancel was called first (--wait-address).
func (b *Book) Deadline(d time.Duration, expired func()) (cancel func()) {
	t, done := time.NewTimer(d), make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-b.got:
		case <-t.C:
			b.timedOut.Store(true)
			expired()
		}
	}()
	return func() { t.Stop(); close(done) }
}

// TimedOut reports whether a Deadline expired.
func (b *Book) TimedOut() bool { return b.timedOut.Load() }
