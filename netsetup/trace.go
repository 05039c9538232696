package netsetup

import (
	"context"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Trace observes Apply as it goes, for verbose logs and crash tests.
// Attach it to Apply's context with WithTrace.
type Trace = hostnet.Trace

// WithTrace returns a context that makes Apply report to t.
func WithTrace(ctx context.Context, t *Trace) context.Context { return hostnet.WithTrace(ctx, t) }

// GuestAddr is an address the guest was seen to take or give up, with
// its evidence; Trace.Addr receives them.
type GuestAddr = hostnet.GuestAddr

// Sources of a GuestAddr.
const (
	SourceDHCP    = hostnet.SourceDHCP
	SourceARP     = hostnet.SourceARP
	SourceNDP     = hostnet.SourceNDP
	SourceTraffic = hostnet.SourceTraffic
	SourceStatic  = hostnet.SourceStatic
	SourceUser    = hostnet.SourceUser
	SourceAgent   = hostnet.SourceAgent
)

// Evidence says in words where an address of the guest comes from: its
// source, and the DHCP server that granted it ("" when none).
func Evidence(source, server string) string {
	switch source {
	case SourceDHCP:
		if server != "" {
			return "DHCP from " + server
		}
		return "DHCP"
	case SourceARP:
		return "ARP"
	case SourceNDP:
		return "NDP"
	case SourceStatic:
		return "--guest-ip"
	case SourceAgent:
		return "the guest agent"
	case SourceUser:
		return "user mode: the guest's address behind user-mode networking, not one on the LAN; reach it through --forward"
	}
	return "seen in its traffic"
}
