package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dnsforward"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// ipForward is the sysctl NAT needs on; it is restored when the last NAT VM leaves.
const ipForward = "net/ipv4/ip_forward"

// natMember is a VM's membership of the NAT network.
type natMember struct {
	ns     netns.NsHandle // the network namespace it joined in
	dir    string
	vm     string
	subnet netip.Prefix
	gw, ip netip.Addr
	file   *os.File // members/VM.json, locked while the VM runs
}

// natJoin makes VM vm (guest MAC mac) a member of the NAT network of the
// calling thread's namespace, creating the network if it is the first.
func natJoin(dir string, p Plan, tr *Trace) (m *natMember, err error) {
	d, err := lockNATDir(dir, true)
	if err != nil {
		return nil, err
	}
	defer d.unlock()
	nc, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	h, err := hostnet.NewHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	st, err := d.readShared()
	if err != nil {
		return nil, fmt.Errorf("NAT state %s: %w", dir, err)
	}
	live, err := d.pruneDead(nc, p.Name, tr)
	if err != nil {
		tr.ReportEvent(fmt.Sprintf("NAT: cleaning up after dead VMs: %v", err))
	}
	subnet, err := ensureNATNetwork(h, nc, d, &st, p.NAT.Subnet, tr)
	if err != nil {
		return nil, err
	}
	if err := checkForwardConflicts(live, p.Name, p.Forwards); err != nil {
		return nil, err
	}
	ip, err := d.lease(subnet, p.Name)
	if err != nil {
		return nil, err
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	m = &natMember{ns: ns, dir: dir, vm: p.Name, subnet: subnet, gw: NATGateway(subnet), ip: ip}
	defer func() {
		if err != nil {
			m.close()
			m.ns.Close()
			err = errors.Join(err, d.forget(nc, p.Name))
		}
	}()
	if m.file, err = d.holdMember(natMemberInfo{VM: p.Name, PID: os.Getpid(), IP: ip.String(), Forwards: p.Forwards}); err != nil {
		return m, err
	}
	if err := deleteVMRules(nc, p.Name); err != nil {
		return m, err
	}
	rs := natBaseRuleset(subnet, NATBridge)
	for _, r := range natForwardRules(rs.Table, rs.chain(chainPrerouting), rs.chain(chainOutput), p.Name, ip, p.Forwards) {
		nc.AddRule(r)
	}
	if err := nc.Flush(); err != nil {
		return m, fmt.Errorf("nftables: port forwards: %w", err)
	}
	return m, nil
}

func (m *natMember) close() {
	if m.file != nil {
		m.file.Close()
		m.file = nil
	}
}

// leave ends the membership in the namespace it was made in, whichever
// thread calls it.
func (m *natMember) leave() error {
	defer m.ns.Close()
	return hostnet.OnThrowawayThread(func() error {
		if err := netns.Set(m.ns); err != nil {
			return fmt.Errorf("enter the NAT network's namespace: %w", err)
		}
		return natLeave(m.dir, m.vm, m)
	})
}

// checkForwardConflicts refuses a host port another live NAT VM forwards.
func checkForwardConflicts(live map[string]member, vm string, fws []Forward) error {
	for _, fw := range fws {
		for other, m := range live {
			if other == vm {
				continue
			}
			for _, ofw := range m.info.Forwards {
				if ofw.Proto == fw.Proto && ofw.HostPort == fw.HostPort {
					return hostnet.Refuse(ErrBadRequest, "--forward %s: host port %s/%d is already forwarded to NAT VM %s; choose another host port", fw, fw.Proto, fw.HostPort, other)
				}
			}
		}
	}
	return nil
}

// ensureNATNetwork makes sure the bridge (with its address), vmrun's table
// and forwarding exist, creating what is missing and recording it in st
// first. It returns the network's subnet.
func ensureNATNetwork(h *netlink.Handle, nc *nftables.Conn, d *natDir, st *natShared, want string, tr *Trace) (netip.Prefix, error) {
	var wantP netip.Prefix
	if want != "" {
		var err error
		if wantP, err = ParseNATSubnet(want); err != nil {
			return netip.Prefix{}, hostnet.Refuse(ErrBadRequest, "%v", err)
		}
	}
	subnet, exists, err := existingNATBridge(h)
	if err != nil {
		return netip.Prefix{}, err
	}
	if exists {
		if want != "" && wantP != subnet {
			return netip.Prefix{}, hostnet.Refuse(ErrBadRequest, "--nat-subnet %s: the NAT network %s already uses %s; leave --nat-subnet out, or stop the other NAT VMs first", want, NATBridge, subnet)
		}
		table, err := nc.ListTableOfFamily(NATTable, nftables.TableFamilyIPv4)
		if err != nil || table == nil {
			tr.ReportEvent("NAT: vmrun's nftables table was missing; recreating it")
			if err := createNATTable(nc, d, st, subnet); err != nil {
				return netip.Prefix{}, err
			}
		}
	} else {
		if subnet, err = pickSubnet(h, wantP); err != nil {
			return netip.Prefix{}, err
		}
		st.Subnet = subnet.String()
		if err := createNATBridge(h, d, st, subnet); err != nil {
			return netip.Prefix{}, err
		}
		if err := createNATTable(nc, d, st, subnet); err != nil {
			return netip.Prefix{}, err
		}
		tr.ReportEvent(fmt.Sprintf("NAT: created bridge %s with %s and table ip %s", NATBridge, netip.PrefixFrom(NATGateway(subnet), subnet.Bits()), NATTable))
	}
	st.Subnet = subnet.String()
	if err := enableForwarding(d, st, tr); err != nil {
		return netip.Prefix{}, err
	}
	return subnet, d.writeShared(*st)
}

// existingNATBridge returns the subnet of the NAT bridge if it exists.
// A link of that name without vmrun's alias is refused.
func existingNATBridge(h *netlink.Handle) (netip.Prefix, bool, error) {
	l, err := h.LinkByName(NATBridge)
	if hostnet.IsNotFound(err) {
		return netip.Prefix{}, false, nil
	}
	if err != nil {
		return netip.Prefix{}, false, err
	}
	if l.Attrs().Alias != NATAlias || l.Type() != "bridge" {
		return netip.Prefix{}, false, hostnet.Refuse(ErrForeignLink, "a link named %s already exists and is not vmrun's NAT bridge (alias %q, type %s); vmrun leaves it alone: delete or rename it to use --net nat", NATBridge, l.Attrs().Alias, l.Type())
	}
	addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return netip.Prefix{}, false, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			ones, _ := a.Mask.Size()
			return netip.PrefixFrom(ip, ones).Masked(), true, nil
		}
	}
	return netip.Prefix{}, false, hostnet.Refuse(ErrForeignLink, "vmrun's NAT bridge %s has no IPv4 address (was it changed by hand?); delete it (ip link del %s) and try again", NATBridge, NATBridge)
}

// pickSubnet returns want (checked) or the first free candidate.
func pickSubnet(h *netlink.Handle, want netip.Prefix) (netip.Prefix, error) {
	used, err := usedPrefixes(h)
	if err != nil {
		return netip.Prefix{}, err
	}
	if want.IsValid() {
		return want, checkSubnet(want, used)
	}
	return ChooseSubnet(NATCandidates(), used)
}

// usedPrefixes returns the IPv4 prefixes this namespace routes (every
// table) or has addresses in.
func usedPrefixes(h *netlink.Handle) ([]netip.Prefix, error) {
	routes, err := hostnet.RetryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var used []netip.Prefix
	add := func(n *net.IPNet) {
		if n == nil {
			return
		}
		if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok {
			ones, _ := n.Mask.Size()
			used = append(used, netip.PrefixFrom(ip, ones).Masked())
		}
	}
	for _, r := range routes {
		add(r.Dst)
	}
	for _, a := range addrs {
		add(a.IPNet)
	}
	return used, nil
}

// natBridgeObject is the record of the NAT bridge.
func natBridgeObject() rundir.Object {
	return rundir.Object{Kind: ObjLink, Name: NATBridge,
		Detail: map[string]string{"type": "bridge", "alias": NATAlias, "mac": NATBridgeMAC.String()}}
}

// createNATBridge creates the bridge: fixed MAC, alias, no IPv6, the
// gateway address, route_localnet (for localhost forwards), up.
func createNATBridge(h *netlink.Handle, d *natDir, st *natShared, subnet netip.Prefix) error {
	if err := d.record(st, natBridgeObject()); err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name = NATBridge
	la.HardwareAddr = NATBridgeMAC
	br := &netlink.Bridge{LinkAttrs: la}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", NATBridge, err)
	}
	gw := NATGateway(subnet)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}}
	steps := []func() error{
		func() error { return h.LinkSetAlias(br, NATAlias) },
		func() error { return hostnet.SilenceIPv6Link(h, br) },
		func() error { return h.AddrAdd(br, addr) },
		func() error {
			_, err := hostnet.SetSysctlRecorded(func(o rundir.Object) error { return d.record(st, o) },
				path.Join("net/ipv4/conf", NATBridge, "route_localnet"), "1")
			return err
		},
		func() error { return h.LinkSetUp(br) },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return fmt.Errorf("set up bridge %s: %w", NATBridge, err)
		}
	}
	return nil
}

// natTableObject is the record of vmrun's nftables table.
func natTableObject() rundir.Object {
	return rundir.Object{Kind: ObjNftTable, Name: NATTable, Detail: map[string]string{"family": "ip"}}
}

// createNATTable (re)creates vmrun's table from scratch, in one
// transaction.
func createNATTable(nc *nftables.Conn, d *natDir, st *natShared, subnet netip.Prefix) error {
	if err := d.record(st, natTableObject()); err != nil {
		return err
	}
	rs := natBaseRuleset(subnet, NATBridge)
	if t, err := nc.ListTableOfFamily(NATTable, nftables.TableFamilyIPv4); err == nil && t != nil {
		nc.DelTable(rs.Table)
	}
	nc.AddTable(rs.Table)
	for _, c := range rs.Chains {
		nc.AddChain(c)
	}
	for _, r := range rs.Rules {
		nc.AddRule(r)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("nftables: create table ip %s: %w", NATTable, err)
	}
	return nil
}

// enableForwarding turns IPv4 forwarding on if it is off, recording the
// old value so that the last NAT VM restores it.
func enableForwarding(d *natDir, st *natShared, tr *Trace) error {
	changed, err := hostnet.SetSysctlRecorded(func(o rundir.Object) error { return d.record(st, o) }, ipForward, "1")
	if err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	if changed {
		tr.ReportEvent("NAT: IPv4 forwarding turned on (off again when the last NAT VM exits)")
	}
	return nil
}

// deleteVMRules deletes VM vm's forward rules from vmrun's table.
func deleteVMRules(nc *nftables.Conn, vm string) error {
	t := natTable()
	if tt, err := nc.ListTableOfFamily(NATTable, nftables.TableFamilyIPv4); err != nil || tt == nil {
		return nil // no table: no rules
	}
	n := 0
	for _, name := range []string{chainPrerouting, chainOutput} {
		rules, err := nc.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			continue // chain missing
		}
		for _, r := range rules {
			if ruleVM(r) == vm {
				if err := nc.DelRule(r); err != nil {
					return err
				}
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("nftables: delete the forwards of %s: %w", vm, err)
	}
	return nil
}

// natLeave ends VM vm's membership (m is nil when gc does it for a dead
// VM) and, if it was the last member and no tap is left on the bridge,
// removes the NAT network: table, bridge, sysctls.
func natLeave(dir, vm string, m *natMember) error {
	if m != nil {
		defer m.close()
	}
	if err := sameNetns(dir); err != nil {
		return err
	}
	d, err := lockNATDir(dir, false)
	if err != nil || d == nil {
		return err
	}
	defer d.unlock()
	nc, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	errs := []error{d.forget(nc, vm)}
	if m != nil {
		m.close() // our own lock goes before the liveness check
	}
	live, err := d.pruneDead(nc, "", nil)
	errs = append(errs, err)
	if len(live) == 0 {
		errs = append(errs, d.teardown())
	}
	return errors.Join(errs...)
}

// sameNetns refuses to work on NAT state dir from another network
// namespace than the calling thread's: its bridge, table and sysctls are
// not the ones here.
func sameNetns(dir string) error {
	id, err := netnsID()
	if err != nil {
		return err
	}
	if filepath.Base(dir) != id {
		return fmt.Errorf("the NAT state %s belongs to another network namespace (this one is %s); run vmrun gc in that namespace", dir, id)
	}
	return nil
}

// natSweep is gc's pass over the NAT state of the calling thread's
// namespace: it forgets dead members and removes the network when none is
// left.
func natSweep(root string) error {
	dir, err := NATStateDir(root)
	if err != nil {
		return err
	}
	d, err := lockNATDir(dir, false)
	if err == nil && d == nil {
		if _, serr := os.Stat(dir); serr == nil {
			// No lock file: what a crash while the directory was made or
			// removed leaves. Take it over, and remove it below.
			d, err = lockNATDir(dir, true)
		}
	}
	// .nat, when empty: a crash may leave it after the last directory.
	defer func() { _ = os.Remove(filepath.Dir(dir)) }()
	if err != nil || d == nil {
		return err
	}
	defer d.unlock()
	nc, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	live, err := d.pruneDead(nc, "", nil)
	if err != nil || len(live) > 0 {
		return err
	}
	return d.teardown()
}

// teardown removes the shared objects (reverse order) and the directory,
// unless a tap is still on the bridge (a VM of another runtime root).
func (d *natDir) teardown() error {
	h, err := hostnet.NewHandle()
	if err != nil {
		return err
	}
	ports, err := bridgePorts(h, NATBridge)
	h.Close()
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		return nil
	}
	st, err := d.readShared()
	if err != nil {
		return fmt.Errorf("NAT state %s: %w", d.path, err)
	}
	left, err := undoObjects(st.Objects)
	if err != nil {
		st.Objects = left
		return errors.Join(err, d.writeShared(st))
	}
	return d.remove()
}

// bridgePorts returns the names of the links enslaved to bridge name.
func bridgePorts(h *netlink.Handle, name string) ([]string, error) {
	br, err := h.LinkByName(name)
	if hostnet.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	links, err := hostnet.RetryDump(h.LinkList)
	if err != nil {
		return nil, err
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	sort.Strings(ports)
	return ports, nil
}

// deleteNftTable deletes the recorded table if it exists.
func deleteNftTable(o rundir.Object) error {
	fam := nftables.TableFamilyIPv4
	if o.Detail["family"] == "inet" {
		fam = nftables.TableFamilyINet
	}
	nc, err := nftables.New()
	if err != nil {
		return err
	}
	if t, err := nc.ListTableOfFamily(o.Name, fam); err != nil || t == nil {
		return nil
	}
	nc.DelTable(&nftables.Table{Name: o.Name, Family: fam})
	if err := nc.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// natSteps are the steps of --net nat around the tap: join the NAT
// network first (the tap's bridge), then the tap on it, then the guest's
// DHCP responder and DNS forwarder.
func natSteps(p Plan) []hostnet.Step {
	n := &natRun{p: p}
	steps := []hostnet.Step{{Name: "nat network", Do: n.join}}
	steps = append(steps, hostnet.BridgeTapSteps()...)
	return append(steps,
		hostnet.Step{Name: "dhcp", Do: n.serveDHCP},
		hostnet.Step{Name: "dns", Do: n.serveDNS},
		hostnet.Step{Name: "firewall", Do: n.checkFirewall})
}

// natRun is the state of one NAT VM's set-up.
type natRun struct {
	p Plan // the plan, for its NAT options
	m *natMember
}

func (n *natRun) join(s *hostnet.Setup) error {
	if n.p.NAT == nil {
		return hostnet.Refuse(ErrBadRequest, "the nat plan has no NAT options")
	}
	dir, err := NATStateDir(rundir.Root())
	if err != nil {
		return err
	}
	obj := hostnet.NATMemberObject(s.Cfg.VM, dir)
	rec, p := s.Rec, n.p
	if err := rec.Record(obj); err != nil {
		return err
	}
	var m *natMember
	s.OnUndo(func() error {
		leave := func() error { return natLeave(dir, p.Name, nil) }
		if m != nil {
			leave = m.leave
		}
		if err := leave(); err != nil {
			return fmt.Errorf("leave the NAT network: %w", err)
		}
		return rec.Forget(obj)
	})
	m, err = natJoin(dir, n.p, s.Trace)
	if err != nil {
		return err
	}
	n.m = m
	s.Trace.ReportNotice(fmt.Sprintf("NAT: the guest gets %s/%d on %s; gateway and DNS %s", m.ip, m.subnet.Bits(), NATBridge, m.gw))
	return nil
}

// serveDHCP runs the guest's DHCP responder on its tap until undone.
func (n *natRun) serveDHCP(s *hostnet.Setup) error {
	m := n.m
	h, err := s.GoReopening(hostnet.ServiceDHCP, hostnet.DHCPPolicy, hostnet.OpenResponder(dhcpserve.Config{
		Link: s.Cfg.LinkName, ClientMAC: s.Cfg.MAC, ServerMAC: NATBridgeMAC,
		Lease: dhcpserve.Lease{
			IP: m.ip.AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32),
			Router: m.gw.AsSlice(), DNS: []net.IP{m.gw.AsSlice()}, ServerID: m.gw.AsSlice(),
		},
		Logf: func(format string, args ...any) { s.Trace.ReportEvent(fmt.Sprintf(format, args...)) },
	}))
	if err != nil {
		return err
	}
	s.OnUndo(func() error { h.Stop(); return nil })
	return nil
}

// serveDNS runs a DNS forwarder on the gateway address. It is not fatal
// when it cannot: the guest then has no DNS, and is told why.
func (n *natRun) serveDNS(s *hostnet.Setup) error {
	rc := n.p.NAT.ResolvConf
	if rc == "" {
		rc = DefaultResolvConf
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
func (n *natRun) checkFirewall(s *hostnet.Setup) error {
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

// RenderNATTable returns the rules of vmrun's table in the calling
// thread's network namespace, one "chain: rule" line each, in nft syntax
// (nil when there is no table).
func RenderNATTable() ([]string, error) {
	nc, err := nftables.New()
	if err != nil {
		return nil, err
	}
	t := natTable()
	if tt, err := nc.ListTableOfFamily(NATTable, nftables.TableFamilyIPv4); err != nil || tt == nil {
		return nil, nil
	}
	var out []string
	for _, name := range []string{chainPrerouting, chainOutput, chainPostrouting, chainForward, chainInput} {
		rules, err := nc.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			return out, fmt.Errorf("chain %s: %w", name, err)
		}
		for _, r := range rules {
			out = append(out, name+": "+renderRule(r))
		}
	}
	return out, nil
}
