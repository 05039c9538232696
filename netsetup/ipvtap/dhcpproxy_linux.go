package ipvtap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
	"github.com/vmrun/vmrun/internal/udpframe"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
)

// vmrun owns an ipvtap guest's DHCP: the guest's client messages reach
// vmrun's DHCP port only (dhcpport_linux.go); vmrun holds a lease from the
// LAN's server with the VM's own client identifier (internal/dhcpupstream,
// as routed mode does), registers its address on the ipvtap, and answers
// the guest with it (internal/dhcpserve's decisions), whatever identifier
// or flags the guest sends.

// proxyMAC is the source MAC of vmrun's answers to the guest: not the
// guest's own (the learner reads frames from that MAC as the guest's).
var proxyMAC = net.HardwareAddr{0x02, 0x76, 0x6d, 0x72, 0x00, 0x43}

// leaseWait is how long an early request of the guest waits for vmrun's
// upstream lease before it goes unanswered (the guest asks again).
const leaseWait = 3 * time.Second

// startProxy answers the guest's DHCP on the DHCP port until Undo.
func (x *guest) startProxy(s *hostnet.Setup) error {
	h, err := s.GoReopening(hostnet.ServiceDHCP, hostnet.DHCPPolicy, func() (func(context.Context) error, error) {
		return x.serveProxy, nil
	})
	if err != nil {
		return err
	}
	s.OnUndo(func() error { h.Stop(); return nil })
	return nil
}

// serveProxy reads the guest's DHCP messages from the port until ctx ends.
func (x *guest) serveProxy(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = x.port.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() { _ = x.port.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 1<<16)
	for {
		n, _, err := x.port.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the guest's DHCP messages: %w", err)
		}
		x.answer(ctx, buf[:n])
	}
}

// answer answers one DHCP message of the guest (frame), if it calls for it.
func (x *guest) answer(ctx context.Context, frame []byte) {
	req, ok := guestRequest(frame)
	if !ok {
		// UDP with IP options, or neighbour discovery for the host's
		// EUI-64 addresses (ndFilters), which the filters take too: dropped.
		if len(frame) > 14 && frame[12] == 0x86 && frame[13] == 0xdd {
			x.mu.Lock()
			x.noticeOnce("nd-eui64", fmt.Sprintf("%s: the guest makes IPv6 addresses from the shared MAC (EUI-64), which are %s's own: vmrun keeps its neighbour discovery for them from the LAN, and they do not work; configure the guest for stable-privacy or random interface identifiers (net.ipv6.conf.all.addr_gen_mode=2 or 3)", x.parent, x.parent))
			x.mu.Unlock()
		}
		return
	}
	if x.guestIP != nil {
		// vmrun holds no lease for a static guest: an answer would hand
		// out an address the LAN's server never granted, on its behalf.
		x.mu.Lock()
		x.noticeOnce("static-dhcp", fmt.Sprintf("%s: the guest sends DHCP (%s), but its address is %s (--guest-ip): vmrun keeps its DHCP from the LAN and answers none; configure %s in the guest", x.parent, req.MessageType(), x.guestIP, x.guestIP))
		x.mu.Unlock()
		return
	}
	cfg := x.proxyLease(ctx)
	if cfg == nil {
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: the guest's %s is not answered: vmrun holds no lease for it (yet)", x.parent, req.MessageType()))
		return
	}
	out, r, err := answerFrame(cfg, req)
	if err == nil && out != nil {
		_, err = x.answers.WriteTo(out, &packet.Addr{HardwareAddr: out[:6]})
	}
	switch {
	case err != nil:
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: answering the guest's %s: %v", x.parent, req.MessageType(), err))
	case out == nil:
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: the guest's %s: no answer (%s)", x.parent, req.MessageType(), r.Note))
	default:
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: the guest's %s (%s) -> %s %s", x.parent, req.MessageType(), r.Note, r.Msg.MessageType(), r.Msg.YourIPAddr))
		if r.Msg.MessageType() == dhcpv4.MessageTypeAck && req.MessageType() == dhcpv4.MessageTypeRequest {
			x.mu.Lock()
			x.noticeOnce("took:"+r.Msg.YourIPAddr.String(), fmt.Sprintf("%s: the guest took %s from vmrun's DHCP answer", x.parent, r.Msg.YourIPAddr))
			x.mu.Unlock()
		}
	}
}

// guestRequest parses a frame from the DHCP port: a DHCP message to port 67.
func guestRequest(frame []byte) (*dhcpv4.DHCPv4, bool) {
	d, err := udpframe.Parse(frame)
	if err != nil || d.DstPort != 67 {
		return nil, false
	}
	req, err := dhcpv4.FromBytes(d.Payload)
	return req, err == nil
}

// answerFrame decides the answer to req under cfg and frames it for the
// DHCP port (nil when req gets none). The frame's destination MAC and IP
// are RFC 2131's; either way it reaches the guest only.
func answerFrame(cfg *dhcpserve.Config, req *dhcpv4.DHCPv4) ([]byte, *dhcpserve.Reply, error) {
	r, err := dhcpserve.Respond(cfg, req)
	if err != nil || r.Msg == nil {
		return nil, r, err
	}
	out, err := (&udpframe.Datagram{SrcMAC: proxyMAC, DstMAC: r.DstMAC, Src: cfg.Lease.ServerID, Dst: r.DstIP,
		SrcPort: 67, DstPort: 68, Payload: r.Msg.ToBytes()}).Marshal()
	return out, r, err
}

// proxyLease returns what the guest is answered with, waiting a little for
// the first upstream lease; nil when there is none.
func (x *guest) proxyLease(ctx context.Context) *dhcpserve.Config {
	if x.guestIP == nil {
		t := time.NewTimer(leaseWait)
		defer t.Stop()
		select {
		case <-x.leased:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.lease == nil {
		return nil
	}
	c := *x.lease
	return &c
}

// startUpstream takes and keeps the guest's lease from the LAN's DHCP
// server until Undo, which releases it; not with --guest-ip.
func (x *guest) startUpstream(s *hostnet.Setup) error {
	if x.guestIP != nil {
		return nil
	}
	// The lease's packet socket is opened on the parent in the keeper's
	// goroutine: in the namespace the set-up runs in, whatever thread.
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	x.hostNS = ns
	s.OnUndo(ns.Close)
	h := s.Services().Go(hostnet.ServiceKeeper, hostnet.KeeperPolicy, x.keepLease)
	s.OnUndo(func() error { h.Stop(); return nil })
	return nil
}

// Retry of a failed upstream acquisition.
const acquireRetry = 10 * time.Second

// keepLease acquires the lease (until it gets one), registers it, keeps it
// renewed, and releases it when ctx ends.
func (x *guest) keepLease(ctx context.Context) error {
	var c *dhcpupstream.Client
	for c == nil {
		start := time.Now()
		err := hostnet.InNS(x.hostNS, func() error {
			var err error
			c, err = dhcpupstream.Acquire(ctx, dhcpupstream.Config{
				Link: x.parent, ClientID: dhcpupstream.VMClientID(x.s.Cfg.VM), Hostname: x.s.Cfg.VM,
				// The server's unicast answer to a renewal with ciaddr
				// reaches vmrun only if the guest answers the LAN's ARP
				// for the address, which it does not while it boots or
				// once it released the address.
				BroadcastRenew: true,
				Logf:           func(format string, args ...any) { x.s.Trace.ReportEvent(fmt.Sprintf(format, args...)) },
			})
			return err
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			x.mu.Lock()
			x.noticeOnce("no-lease", fmt.Sprintf("%s: no DHCP server gave vmrun an address for the guest (%v); vmrun keeps asking every %s (or give the guest one with --guest-ip)", x.parent, err, acquireRetry))
			x.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(acquireRetry):
			}
			continue
		}
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: the LAN's DHCP server answered vmrun in %s", x.parent, time.Since(start).Round(time.Microsecond)))
	}
	if busy := x.follow(c.Lease()); busy && !x.registerWhenFree(ctx, c) {
		// The address stayed with the link that has it (the VM's
		// attachment the guest is still on, when this one's switch
		// failed), and so does its lease: not released here.
		_ = c.Close()
		return nil
	}
	defer x.release(c)
	return c.Run(ctx, func(l dhcpupstream.Lease) { x.follow(l) })
}

// Waiting for the lease's address to be free on the parent (see
// registerWhenFree): a retry every busyRetry, for at most busyWait.
const (
	busyRetry = 100 * time.Millisecond
	busyWait  = 30 * time.Second
)

// registerWhenFree registers the lease's address once no other ipvlan
// link on the parent has it. When the guest is re-attached on the same
// parent (the parent's MAC changed), the previous attachment's link holds
// the address — the same lease, the VM's client identifier — until the
// guest's NIC is swapped and that attachment is removed, which also
// releases the lease upstream: so once the address is free, the lease is
// renewed. Another VM's link holding it for busyWait is one notice, as
// any registration failure. It returns false when ctx ended while the
// address was still another link's: the lease is that link's then (the
// VM's attachment the guest is still on, when this one is undone because
// the switch failed), and must not be released with this attachment.
func (x *guest) registerWhenFree(ctx context.Context, c *dhcpupstream.Client) (keep bool) {
	l := c.Lease()
	a, _ := netip.AddrFromSlice(l.IP.To4())
	deadline := time.Now().Add(busyWait)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(busyRetry):
		}
		err := x.take(a, l)
		switch {
		case err == nil:
			if nl, err := c.Renew(ctx); err == nil {
				x.follow(nl)
			} else {
				x.s.Trace.ReportEvent(fmt.Sprintf("%s: renewing the guest's lease of %s after its address was free: %v", x.parent, a, err))
			}
			return true
		case !errors.Is(err, errAddrBusy) || time.Now().After(deadline):
			x.s.Trace.ReportNotice(fmt.Sprintf("%s: the guest's lease %s: %v", x.parent, a, err))
			return true
		}
	}
}

// release gives the upstream lease back (the guest's address is left
// registered: the namespace and the ipvtap go at Undo).
func (x *guest) release(c *dhcpupstream.Client) {
	ip := c.Lease().IP
	if err := c.Release(); err != nil {
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: %v", x.parent, err))
		return
	}
	x.s.Trace.ReportEvent(fmt.Sprintf("%s: released the guest's lease of %s", x.parent, ip))
}

// follow makes l the guest's lease: its address registered (a previous one
// unregistered) and the answers to the guest built from it. A guest that
// holds the previous address is refused at its next renewal and asks again.
// busy: another ipvlan link on the parent has the address (an event, not
// a notice: the caller waits for it, registerWhenFree).
func (x *guest) follow(l dhcpupstream.Lease) (busy bool) {
	a, ok := netip.AddrFromSlice(l.IP.To4())
	if !ok {
		return false
	}
	cfg := proxyConfig(x.parent, x.guestMAC, l)
	if err := dhcpserve.Check(&cfg); err != nil {
		x.s.Trace.ReportNotice(fmt.Sprintf("%s: the lease %s from %s cannot be handed to the guest: %v", x.parent, l.IP, l.ServerID, err))
		return false
	}
	var old netip.Addr
	x.mu.Lock()
	if x.lease != nil {
		old, _ = netip.AddrFromSlice(x.lease.Lease.IP.To4())
	}
	x.mu.Unlock()
	if old == a {
		x.mu.Lock()
		x.lease = &cfg
		x.mu.Unlock()
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: the guest's lease of %s was extended by %s", x.parent, a, l.LeaseTime))
		return false
	}
	if old.IsValid() {
		x.unregister(old, "the LAN's DHCP server gave vmrun "+a.String()+" instead")
	}
	err := x.take(a, l)
	if errors.Is(err, errAddrBusy) {
		x.s.Trace.ReportEvent(fmt.Sprintf("%s: the guest's lease %s: another ipvlan link on %s has the address (the VM's previous attachment, while the guest is moved?); it is registered once it is free", x.parent, a, x.parent))
		return true
	}
	if err != nil {
		x.s.Trace.ReportNotice(fmt.Sprintf("%s: the guest's lease %s: %v", x.parent, a, err))
	}
	return false
}

// take registers a, leased upstream as l, and makes l the lease the
// guest is answered with.
func (x *guest) take(a netip.Addr, l dhcpupstream.Lease) error {
	cfg := proxyConfig(x.parent, x.guestMAC, l)
	if err := dhcpserve.Check(&cfg); err != nil {
		return err
	}
	return hostnet.Privileged(func() error {
		x.mu.Lock()
		defer x.mu.Unlock()
		if err := x.registerLeased(a, l); err != nil {
			return err
		}
		x.lease = &cfg
		if !x.leasedDone {
			x.leasedDone = true
			close(x.leased)
		}
		return nil
	})
}

// registerLeased registers a, leased upstream for the guest, unless it is
// the host's own or a gateway's (a server that answers so is refused).
func (x *guest) registerLeased(a netip.Addr, l dhcpupstream.Lease) error {
	if x.policy().Check(a) != learn.AddrOK {
		return errors.New("the server handed out the host's or a gateway's own address; vmrun does not give it to the guest")
	}
	why := fmt.Sprintf("leased from %s with client-id vmrun-%s for %s", l.ServerID, x.s.Cfg.VM, l.LeaseTime)
	if _, ok := x.addrs[a]; ok {
		return nil
	}
	return x.registerLocked(a, why)
}

// proxyConfig is what the guest is answered with for upstream lease l:
// its address, mask, router, DNS servers and domain, the server's
// identifier, and half the upstream lease time (dhcpserve.Check fills in
// and checks the rest).
func proxyConfig(parent string, mac net.HardwareAddr, l dhcpupstream.Lease) dhcpserve.Config {
	sid := l.ServerID
	if sid == nil {
		sid = l.Router
	}
	return dhcpserve.Config{
		Link: parent, ClientMAC: mac, ServerMAC: proxyMAC,
		Lease: dhcpserve.Lease{
			IP: l.IP.To4(), Mask: l.Mask, Router: l.Router, DNS: l.DNS, Domain: l.Domain,
			ServerID: sid, LeaseTime: guestLeaseTime(l.LeaseTime),
		},
	}
}

// Bounds of the guest's lease time.
const (
	maxGuestLease = time.Hour
	minGuestLease = 10 * time.Second
)

// guestLeaseTime is half the upstream lease time, so that the guest asks
// again before the upstream lease could end, between 10 s and an hour.
func guestLeaseTime(up time.Duration) time.Duration {
	if up <= 0 {
		return maxGuestLease
	}
	return min(max(up/2, minGuestLease), maxGuestLease)
}
