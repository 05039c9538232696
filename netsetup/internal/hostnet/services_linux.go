package hostnet

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dnsforward"
	"github.com/vmrun/vmrun/internal/service"
)

// Services returns the attachment's service group, made on first use from
// the set-up's context (see NewServices). The undo of the step that
// started a service stops it (or cancels it, to be waited for later); the
// attachment's Undo stops the whole group once more after its last undo.
func (s *Setup) Services() *service.Group {
	if s.Att.Services == nil {
		s.Att.Services = NewServices(s.Ctx)
	}
	return s.Att.Services
}

// stopServices stops what is left of the group, if there is one.
func (s *Setup) stopServices() {
	if s.Att.Services != nil {
		s.Att.Services.Stop()
	}
}

// GoReopening runs a service that owns a socket in the calling thread's
// network namespace. open opens it and returns the function that serves
// on it until its context ends (and then closes it). The first open runs
// here, so a failure fails the step; a restart opens again, in the same
// namespace, with vmrun's capabilities raised.
func (s *Setup) GoReopening(name string, p service.Policy, open func() (serve func(ctx context.Context) error, err error)) (*service.Handle, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("%s: network namespace: %w", name, err)
	}
	serve, err := open()
	if err != nil {
		ns.Close()
		return nil, err
	}
	h := s.Services().Go(name, p, func(ctx context.Context) error {
		if serve == nil {
			if err := InNS(ns, func() error {
				var err error
				serve, err = open()
				return err
			}); err != nil {
				return err
			}
			s.Trace.ReportEvent(name + " serves again")
		}
		defer func() { serve = nil }()
		return serve(ctx)
	})
	go func() {
		h.Wait()
		ns.Close()
	}()
	return h, nil
}

// OpenResponder returns the opener of a DHCP responder on cfg.Link for
// GoReopening: it opens the responder's socket, and its service answers
// the guest until its context ends, then closes the socket.
func OpenResponder(cfg dhcpserve.Config) func() (func(context.Context) error, error) {
	return func() (func(context.Context) error, error) {
		srv, err := dhcpserve.New(cfg)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			return errors.Join(srv.Serve(ctx), srv.Close())
		}, nil
	}
}

// OpenForwarder returns the opener of a DNS forwarder for GoReopening: its
// service runs until its context ends or the forwarder stops serving on
// its own, and then closes it.
func OpenForwarder(cfg dnsforward.Config) func() (func(context.Context) error, error) {
	return func() (func(context.Context) error, error) {
		f, err := dnsforward.Start(cfg)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return f.Close()
			case <-f.Done():
				return errors.Join(f.Err(), f.Close())
			}
		}, nil
	}
}
