package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// guestAddr records an address the attachment saw the guest take (or give
// up) in the VM's state, for `vmrun ls` and `vmrun wait`, and announces
// the first one on stderr. The attachment's services call it. IPv6
// link-local addresses are left out: no script can use one without its
// zone, and `vmrun wait` must not return one before the guest's real
// address.
func (s *session) guestAddr(a netsetup.GuestAddr) {
	if a.Addr.IsLinkLocalUnicast() {
		return
	}
	if a.Source == netsetup.SourceDHCP && !a.Drop {
		s.verdict.Answered()
	}
	ra := rundir.Address{Addr: a.Addr.String(), Source: a.Source, Learnt: time.Now().UTC()}
	if a.Server.IsValid() {
		ra.Server = a.Server.String()
	}
	changed, err := s.dir.SetAddress(ra, a.Drop)
	if err != nil {
		s.step("recording guest address %s: %v", ra.Addr, err)
		return
	}
	if changed && a.Source != netsetup.SourceAgent && s.agent != nil {
		s.agent.Kick() // the agent may know more (e.g. the guest's IPv6 too)
	}
	if !changed || a.Drop {
		return
	}
	s.step("guest address %s (%s)", ra.Addr, netsetup.Evidence(ra.Source, ra.Server))
	s.firstAddr.Do(func() {
		s.notify("guest address %s (%s)", ra.Addr, netsetup.Evidence(ra.Source, ra.Server))
		close(s.gotAddr)
	})
}

// waitForAddr stops the VM when --wait-address passes before the guest
// has an address; supervise then ends the run with exitcode.Timeout.
func (s *session) waitForAddr() {
	d := s.spec.WaitAddress
	if d <= 0 {
		return
	}
	t, done := time.NewTimer(d), make(chan struct{})
	s.undo.Push("--wait-address timer", func() error { t.Stop(); close(done); return nil })
	go func() {
		select {
		case <-done:
		case <-s.gotAddr:
		case <-t.C:
			s.addrTimedOut.Store(true)
			s.notify("no guest address within --wait-address %s: powering the VM off", d)
			select {
			case s.sigc <- syscall.SIGTERM:
			default: // a stop request is already pending
			}
		}
	}()
}

// addrTimeout is the run's error when --wait-address passed.
func (s *session) addrTimeout() error {
	return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("no guest address within --wait-address %s (the guest did not take one, or vmrun cannot see it in --net %s); the VM was stopped", s.spec.WaitAddress, s.plan.Mode))
}

// watchAgent asks the guest agent, when the guest has one, for the
// guest's addresses while QEMU runs, and records them (guestAddr, source
// "agent"), through the supervisor's own connection to the agent.
func (s *session) watchAgent() {
	if s.agent == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.agent.WatchAddresses(ctx, s.fromAgent) }()
	s.undo.Push("guest agent's addresses", func() error { cancel(); <-done; return nil })
}

// fromAgent records the agent's answer: the addresses it reports, and
// that those it reported before and no longer does are gone.
func (s *session) fromAgent(addrs []netip.Addr) {
	for _, a := range s.agentAddrs {
		if !slices.Contains(addrs, a) {
			s.guestAddr(netsetup.GuestAddr{Addr: a, Source: netsetup.SourceAgent, Drop: true})
		}
	}
	for _, a := range addrs {
		s.guestAddr(netsetup.GuestAddr{Addr: a, Source: netsetup.SourceAgent})
	}
	s.agentAddrs = addrs
}
