package main

import (
	"context"
	"fmt"
	"syscall"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/guestaddr"
	"github.com/vmrun/vmrun/internal/rundir"
)

// newAddrBook is the session's book of guest addresses (guestaddr): kept
// in the VM's state, DHCP answers counted by --net auto's check, and the
// agent asked again when the guest's traffic shows a new one.
func (s *session) newAddrBook() *guestaddr.Book {
	return guestaddr.New(guestaddr.Hooks{
		Record:   func(a rundir.Address, drop bool) (bool, error) { return s.dir.SetAddress(a, drop) },
		Answered: func() { s.verdict.Answered() },
		Kick: func() {
			if s.agent != nil {
				s.agent.Kick()
			}
		},
		Step: s.step, Notify: s.notify,
	})
}

// waitForAddr stops the VM when --wait-address passes before the guest
// has an address; supervise then ends the run with exitcode.Timeout.
func (s *session) waitForAddr() {
	d := s.spec.WaitAddress
	if d <= 0 {
		return
	}
	cancel := s.addrs.Deadline(d, func() {
		s.notify("no guest address within --wait-address %s: powering the VM off", d)
		select {
		case s.sigc <- syscall.SIGTERM:
		default: // a stop request is already pending
		}
	})
	s.undo.Push("--wait-address timer", func() error { cancel(); return nil })
}

// addrTimeout is the run's error when --wait-address passed.
func (s *session) addrTimeout() error {
	return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("no guest address within --wait-address %s (the guest did not take one, or vmrun cannot see it in --net %s); the VM was stopped", s.spec.WaitAddress, s.plan.Mode))
}

// watchAgent asks the guest agent, when the guest has one, for the
// guest's addresses while QEMU runs, and records them (source "agent"),
// through the supervisor's own connection to the agent.
func (s *session) watchAgent() {
	if s.agent == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.agent.WatchAddresses(ctx, s.addrs.FromAgent) }()
	s.undo.Push("guest agent's addresses", func() error { cancel(); <-done; return nil })
}
