package nat

import (
	"context"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dnsforward"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Config is what --net nat needs of a plan.
type Config struct {
	Link hostnet.LinkConfig // Parent is Bridge
	Caps []int              // the capabilities to raise (internal/caps numbers)
	// Root is the runtime root; the NAT network's state lives under it
	// (StateDir).
	Root string
	// Subnet is --nat-subnet; "" lets the first VM pick a free one.
	Subnet string
	// ResolvConf is where the DNS forwarder finds the host's resolvers;
	// "" means defaultResolvConf.
	ResolvConf string
	Forwards   []hostnet.Forward
}

// Attach joins the NAT network of the calling thread's namespace
// (creating it if this VM is the first), puts a tap on its bridge and
// serves the guest DHCP and DNS (see hostnet.Run). The tap's MAC is the
// kernel's until the "host mac" step, so its record has none.
func (c Config) Attach(ctx context.Context, rec hostnet.Recorder) (*hostnet.Attachment, error) {
	obj := hostnet.LinkObject(c.Link.VM, c.Link.LinkName, "tuntap", nil)
	return hostnet.Run(ctx, c.Link, rec, obj, c.Caps, steps(c))
}

// steps are the steps of --net nat around the tap: join the NAT
// network first (the tap's bridge), then the tap on it, then the guest's
// DHCP responder and DNS forwarder.
func steps(c Config) []hostnet.Step {
	n := &run{c: c}
	steps := []hostnet.Step{{Name: "nat network", Do: n.join}}
	steps = append(steps, hostnet.BridgeTapSteps()...)
	return append(steps,
		hostnet.Step{Name: "dhcp", Do: n.serveDHCP},
		hostnet.Step{Name: "dns", Do: n.serveDNS},
		hostnet.Step{Name: "firewall", Do: n.checkFirewall})
}

// run is the state of one NAT VM's set-up.
type run struct {
	c Config
	m *membership
}

func (n *run) join(s *hostnet.Setup) error {
	dir, err := StateDir(n.c.Root)
	if err != nil {
		return err
	}
	obj := hostnet.NATMemberObject(s.Cfg.VM, dir)
	rec, vm := s.Rec, n.c.Link.VM
	if err := rec.Record(obj); err != nil {
		return err
	}
	var m *membership
	s.OnUndo(func() error {
		leave := func() error { return leave(dir, vm, nil) }
		if m != nil {
			leave = m.leave
		}
		if err := leave(); err != nil {
			return fmt.Errorf("leave the NAT network: %w", err)
		}
		return rec.Forget(obj)
	})
	m, err = join(dir, n.c, s.Trace)
	if err != nil {
		return err
	}
	n.m = m
	s.Trace.ReportNotice(fmt.Sprintf("NAT: the guest gets %s/%d on %s; gateway and DNS %s", m.ip, m.subnet.Bits(), Bridge, m.gw))
	return nil
}

// serveDHCP runs the guest's DHCP responder on its tap until undone.
func (n *run) serveDHCP(s *hostnet.Setup) error {
	m := n.m
	h, err := s.GoReopening(hostnet.ServiceDHCP, hostnet.DHCPPolicy, hostnet.OpenResponder(dhcpserve.Config{
		Link: s.Cfg.LinkName, ClientMAC: s.Cfg.MAC, ServerMAC: BridgeMAC(),
		Lease: dhcpserve.Lease{
			IP: m.ip.AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32),
			Router: m.gw.AsSlice(), DNS: []net.IP{m.gw.AsSlice()}, ServerID: m.gw.AsSlice(),
		},
		Logf:  func(format string, args ...any) { s.Trace.ReportEvent(fmt.Sprintf(format, args...)) },
		OnAck: func(ip net.IP) { s.Trace.ReportAck(m.gw.AsSlice(), ip) },
	}))
	if err != nil {
		return err
	}
	s.OnUndo(func() error { h.Stop(); return nil })
	return nil
}

// serveDNS runs a DNS forwarder on the gateway address. It is not fatal
// when it cannot: the guest then has no DNS, and is told why.
func (n *run) serveDNS(s *hostnet.Setup) error {
	rc := n.c.ResolvConf
	if rc == "" {
		rc = defaultResolvConf
	}
	h, err := s.GoReopening(hostnet.ServiceDNS, hostnet.DNSPolicy, hostnet.OpenForwarder(dnsforward.Config{
		Addr: dnsforward.Addr(n.m.gw.AsSlice()), ResolvConf: rc,
		Logf: func(format string, args ...any) { s.Trace.ReportEvent(fmt.Sprintf(format, args...)) },
	}))
	if err != nil {
		s.Trace.ReportNotice(fmt.Sprintf("NAT: no DNS for the guest: %v", err))
		return nil
	}
	s.OnUndo(func() error { h.Stop(); return nil })
	return nil
}

// checkFirewall tells the user when another table drops forwarded traffic.
func (n *run) checkFirewall(s *hostnet.Setup) error {
	nc, err := nftables.New()
	if err != nil {
		return nil
	}
	chains, err := nc.ListChains()
	if err != nil {
		return nil
	}
	if b := forwardBlockers(chains); len(b) > 0 {
		s.Trace.ReportNotice(forwardBlockNotice(b))
	}
	return nil
}
