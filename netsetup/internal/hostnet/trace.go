package hostnet

import (
	"context"
	"net"
	"net/netip"
)

// Trace observes Apply as it goes, for verbose logs and crash tests.
// Attach it to Apply's context with WithTrace.
type Trace struct {
	// Step is called after each step of Apply succeeded, with the step's
	// name ("record", "create", "open queues", ...).
	Step func(name string)
	// Event is called for things worth a log line that are not steps
	// ("deleted stale link vmr…m left by a previous run").
	Event func(msg string)
	// Notice is called for what the user must hear while the VM runs,
	// verbose or not ("guest address 192.168.1.57 registered", "wlan0's
	// MAC changed: ..."). Background services of an attachment report here.
	Notice func(msg string)
	// Addr is called when the guest is seen to take or give up an
	// address: by the learners of an attachment, vmrun's DHCP responder,
	// or user mode's set-up (its fixed address). It may be called from
	// several goroutines at once, and must not block.
	Addr func(GuestAddr)
	// Discover is called for each DHCPDISCOVER the guest sends on a
	// bridge or macvtap attachment (the watcher of its addresses sees
	// them), so --net auto can tell a LAN that never answers. Same rules
	// as Addr. xid is the DISCOVER's transaction id (vmrun's own probe,
	// sent from the guest's MAC, is told apart by it).
	Discover func(xid uint32)
}

// ReportDiscover calls Discover, if set.
func (t *Trace) ReportDiscover(xid uint32) {
	if t != nil && t.Discover != nil {
		t.Discover(xid)
	}
}

type traceKey struct{}

// WithTrace returns a context that makes Apply report to t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom returns the Trace attached to ctx, or nil.
func TraceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// ReportStep calls Step, if set.
func (t *Trace) ReportStep(name string) {
	if t != nil && t.Step != nil {
		t.Step(name)
	}
}

// ReportNotice calls Notice, if set.
func (t *Trace) ReportNotice(msg string) {
	if t != nil && t.Notice != nil {
		t.Notice(msg)
	}
}

// ReportEvent calls Event, if set.
func (t *Trace) ReportEvent(msg string) {
	if t != nil && t.Event != nil {
		t.Event(msg)
	}
}

// GuestAddr is an address the guest was seen to take (or give up), and
// the evidence.
type GuestAddr struct {
	Addr netip.Addr
	// Source names the evidence: SourceDHCP, SourceARP, SourceNDP,
	// SourceUser, SourceStatic, SourceTraffic.
	Source string
	// Server is the DHCP server that granted it (SourceDHCP); invalid when
	// unknown.
	Server netip.Addr
	// Drop: the guest gave the address up (a DHCP release or decline).
	Drop bool
}

// Sources of a GuestAddr.
const (
	SourceDHCP    = "dhcp"    // a DHCP server's ACK to the guest
	SourceARP     = "arp"     // the guest's ARP
	SourceNDP     = "ndp"     // the guest's IPv6 duplicate address detection
	SourceTraffic = "traffic" // the source address of the guest's packets
	SourceStatic  = "static"  // vmrun gave it (--guest-ip)
	SourceUser    = "user"    // user mode's fixed address: not on the LAN
	SourceAgent   = "agent"   // the guest's own word, through its QEMU guest agent
)

// ReportAddr calls Addr, if set.
func (t *Trace) ReportAddr(a GuestAddr) {
	if t != nil && t.Addr != nil {
		t.Addr(a)
	}
}

// ReportAck reports that server (vmrun's own DHCP responder) acked ip to
// the guest: a dhcpserve.Config's OnAck.
func (t *Trace) ReportAck(server, ip net.IP) {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return
	}
	srv, _ := netip.AddrFromSlice(server.To4())
	t.ReportAddr(GuestAddr{Addr: a, Source: SourceDHCP, Server: srv})
}
