package nat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// ipForward is the sysctl NAT needs on; it is restored when the last NAT VM leaves.
const ipForward = "net/ipv4/ip_forward"

// bridgeRouteLocalnet is the bridge's sysctl localhost forwards need on;
// a new link takes its value from defaultRouteLocalnet.
var (
	bridgeRouteLocalnet  = path.Join("net/ipv4/conf", Bridge, "route_localnet")
	defaultRouteLocalnet = "net/ipv4/conf/default/route_localnet"
)

// membership is a VM's membership of the NAT network.
type membership struct {
	ns     netns.NsHandle // the network namespace it joined in
	dir    string
	vm     string
	subnet netip.Prefix
	gw, ip netip.Addr
	file   *os.File // members/VM.json, locked while the VM runs
}

// join makes VM c.Link.VM a member of the NAT network of the calling
// thread's namespace, creating the network if it is the first.
func join(dir string, c Config, tr *hostnet.Trace) (m *membership, err error) {
	vm := c.Link.VM
	d, err := lockDir(dir, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if d.unsynced {
			go flushShared(d.path) // the set-up's one durable write (see writeShared), not waited for
		}
	}()
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
	live, err := d.pruneDead(nc, vm, tr)
	if err != nil {
		tr.ReportEvent(fmt.Sprintf("NAT: cleaning up after dead VMs: %v", err))
	}
	subnet, freshTable, err := ensureNetwork(h, nc, d, &st, c.Subnet, tr)
	if err != nil {
		return nil, err
	}
	if err := checkForwardConflicts(live, vm, c.Forwards); err != nil {
		return nil, err
	}
	ip, err := d.lease(subnet, vm)
	if err != nil {
		return nil, err
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	m = &membership{ns: ns, dir: dir, vm: vm, subnet: subnet, gw: gateway(subnet), ip: ip}
	defer func() {
		if err != nil {
			m.close()
			m.ns.Close()
			err = errors.Join(err, d.forget(nc, vm))
		}
	}()
	if m.file, err = d.holdMember(memberInfo{VM: vm, PID: os.Getpid(), IP: ip.String(), Forwards: c.Forwards}); err != nil {
		return m, err
	}
	if !freshTable { // a table made just now holds no rules of a previous run
		if err := deleteVMRules(nc, vm); err != nil {
			return m, err
		}
	}
	rs := baseRuleset(subnet, Bridge)
	for _, r := range forwardRules(rs.Table, rs.chain(chainPrerouting), rs.chain(chainOutput), vm, ip, c.Forwards) {
		nc.AddRule(r)
	}
	if err := nc.Flush(); err != nil {
		return m, fmt.Errorf("nftables: port forwards: %w", err)
	}
	return m, nil
}

func (m *membership) close() {
	if m.file != nil {
		m.file.Close()
		m.file = nil
	}
}

// leave ends the membership in the namespace it was made in, whichever
// thread calls it.
func (m *membership) leave() error {
	defer m.ns.Close()
	return hostnet.OnThrowawayThread(func() error {
		if err := netns.Set(m.ns); err != nil {
			return fmt.Errorf("enter the NAT network's namespace: %w", err)
		}
		return leave(m.dir, m.vm, m)
	})
}

// checkForwardConflicts refuses a host port another live NAT VM forwards.
func checkForwardConflicts(live map[string]member, vm string, fws []hostnet.Forward) error {
	for _, fw := range fws {
		for other, m := range live {
			if other == vm {
				continue
			}
			for _, ofw := range m.info.Forwards {
				if ofw.Proto == fw.Proto && ofw.HostPort == fw.HostPort {
					return hostnet.Refuse(hostnet.ErrBadRequest, "--forward %s: host port %s/%d is already forwarded to NAT VM %s; choose another host port", fw, fw.Proto, fw.HostPort, other)
				}
			}
		}
	}
	return nil
}

// ensureNetwork makes sure the bridge (with its address), vmrun's table
// and forwarding exist, creating what is missing. It returns the
// network's subnet, and whether it made the table just now. Everything it is about to create is recorded in st
// first, in one write of the state (prerecord), not one write per object;
// join then has it made durable. A VM joining a network whose objects all
// exist writes nothing.
func ensureNetwork(h *netlink.Handle, nc *nftables.Conn, d *lockedDir, st *shared, want string, tr *hostnet.Trace) (subnet netip.Prefix, freshTable bool, err error) {
	subnet0 := st.Subnet
	var wantP netip.Prefix
	if want != "" {
		if wantP, err = ParseSubnet(want); err != nil {
			return netip.Prefix{}, false, hostnet.Refuse(hostnet.ErrBadRequest, "%v", err)
		}
	}
	subnet, exists, err := existingBridge(h)
	if err != nil {
		return netip.Prefix{}, false, err
	}
	needTable := !exists
	if exists {
		if want != "" && wantP != subnet {
			return netip.Prefix{}, false, hostnet.Refuse(hostnet.ErrBadRequest, "--nat-subnet %s: the NAT network %s already uses %s; leave --nat-subnet out, or stop the other NAT VMs first", want, Bridge, subnet)
		}
		table, err := nc.ListTableOfFamily(tableName, nftables.TableFamilyIPv4)
		if err != nil || table == nil {
			tr.ReportEvent("NAT: vmrun's nftables table was missing; recreating it")
			needTable = true
		}
	} else if subnet, err = pickSubnet(h, wantP); err != nil {
		return netip.Prefix{}, false, err
	}
	st.Subnet = subnet.String()
	if err := d.prerecord(st, !exists, needTable, st.Subnet != subnet0); err != nil {
		return netip.Prefix{}, false, err
	}
	if !exists {
		if err := createBridge(h, d, st, subnet); err != nil {
			return netip.Prefix{}, false, err
		}
	}
	if needTable {
		if err := createTable(nc, d, st, subnet); err != nil {
			return netip.Prefix{}, false, err
		}
	}
	if !exists {
		tr.ReportEvent(fmt.Sprintf("NAT: created bridge %s with %s and table ip %s", Bridge, netip.PrefixFrom(gateway(subnet), subnet.Bits()), tableName))
	}
	if err := enableForwarding(d, st, tr); err != nil {
		return netip.Prefix{}, false, err
	}
	return subnet, needTable, nil
}

// prerecord records, in one write of the state, the shared objects
// ensureNetwork is about to create or change, in the order it does (the
// undo runs in reverse): the bridge and its route_localnet (its old value
// is the one a new link inherits, conf/default's), the table, and IPv4
// forwarding when it is off. The state is also written when only its
// subnet changed (subnetChanged). Each object's own step then finds it
// recorded (record writes nothing); one recorded and never created is
// undone as missing, which every shared object's undo allows.
func (d *lockedDir) prerecord(st *shared, bridge, table, subnetChanged bool) error {
	var objs []rundir.Object
	if bridge {
		objs = append(objs, bridgeObject())
		if old, err := hostnet.ReadSysctl(defaultRouteLocalnet); err == nil && old != "1" {
			objs = append(objs, hostnet.SysctlObject(bridgeRouteLocalnet, old))
		}
	}
	if table {
		objs = append(objs, tableObject())
	}
	if old, err := hostnet.ReadSysctl(ipForward); err == nil && old != "1" {
		objs = append(objs, hostnet.SysctlObject(ipForward, old))
	}
	n := len(st.Objects)
	for _, o := range objs {
		if !recorded(st, o) {
			st.Objects = append(st.Objects, o)
		}
	}
	if len(st.Objects) == n && !subnetChanged {
		return nil
	}
	return d.writeShared(*st, false)
}

// existingBridge returns the subnet of the NAT bridge if it exists.
// A link of that name without vmrun's alias is refused.
func existingBridge(h *netlink.Handle) (netip.Prefix, bool, error) {
	l, err := h.LinkByName(Bridge)
	if hostnet.IsNotFound(err) {
		return netip.Prefix{}, false, nil
	}
	if err != nil {
		return netip.Prefix{}, false, err
	}
	if l.Attrs().Alias != bridgeAlias || l.Type() != "bridge" {
		return netip.Prefix{}, false, hostnet.Refuse(hostnet.ErrForeignLink, "a link named %s already exists and is not vmrun's NAT bridge (alias %q, type %s); vmrun leaves it alone: delete or rename it to use --net nat", Bridge, l.Attrs().Alias, l.Type())
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
	return netip.Prefix{}, false, hostnet.Refuse(hostnet.ErrForeignLink, "vmrun's NAT bridge %s has no IPv4 address (was it changed by hand?); delete it (ip link del %s) and try again", Bridge, Bridge)
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
	return chooseSubnet(candidates(), used)
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

// bridgeObject is the record of the NAT bridge.
func bridgeObject() rundir.Object {
	return rundir.Object{Kind: hostnet.ObjLink, Name: Bridge,
		Detail: map[string]string{"type": "bridge", "alias": bridgeAlias, "mac": BridgeMAC().String()}}
}

// createBridge creates the bridge: fixed MAC, alias, no IPv6, the
// gateway address, route_localnet (for localhost forwards), up.
func createBridge(h *netlink.Handle, d *lockedDir, st *shared, subnet netip.Prefix) error {
	if err := d.record(st, bridgeObject()); err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name = Bridge
	la.HardwareAddr = BridgeMAC()
	br := &netlink.Bridge{LinkAttrs: la}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", Bridge, err)
	}
	gw := gateway(subnet)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}}
	steps := []func() error{
		func() error { return h.LinkSetAlias(br, bridgeAlias) },
		func() error { return hostnet.SilenceIPv6Link(h, br) },
		func() error { return h.AddrAdd(br, addr) },
		func() error {
			_, err := hostnet.SetSysctlRecorded(func(o rundir.Object) error { return d.record(st, o) }, bridgeRouteLocalnet, "1")
			return err
		},
		func() error { return h.LinkSetUp(br) },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return fmt.Errorf("set up bridge %s: %w", Bridge, err)
		}
	}
	return nil
}

// tableObject is the record of vmrun's nftables table.
func tableObject() rundir.Object {
	return rundir.Object{Kind: hostnet.ObjNftTable, Name: tableName, Detail: map[string]string{"family": "ip"}}
}

// createTable (re)creates vmrun's table from scratch, in one
// transaction. It does not ask first whether the table exists (a round
// trip): the transaction creates it exclusively, and only when a table
// is there already (left by a crashed vmrun) is it replaced, in a second
// one.
func createTable(nc *nftables.Conn, d *lockedDir, st *shared, subnet netip.Prefix) error {
	if err := d.record(st, tableObject()); err != nil {
		return err
	}
	rs := baseRuleset(subnet, Bridge)
	err := flushTable(nc, rs, false)
	if errors.Is(err, unix.EEXIST) {
		err = flushTable(nc, rs, true)
	}
	if err != nil {
		return fmt.Errorf("nftables: create table ip %s: %w", tableName, err)
	}
	return nil
}

// flushTable creates ruleset rs in one transaction: exclusively (the
// transaction fails with EEXIST when the table exists), or replacing the
// table there.
func flushTable(nc *nftables.Conn, rs ruleset, replace bool) error {
	if replace {
		nc.DelTable(rs.Table)
		nc.AddTable(rs.Table)
	} else {
		nc.CreateTable(rs.Table)
	}
	for _, c := range rs.Chains {
		nc.AddChain(c)
	}
	for _, r := range rs.Rules {
		nc.AddRule(r)
	}
	return nc.Flush()
}

// enableForwarding turns IPv4 forwarding on if it is off, recording the
// old value so that the last NAT VM restores it.
func enableForwarding(d *lockedDir, st *shared, tr *hostnet.Trace) error {
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
	t := vmrunTable()
	n := 0
	for _, name := range []string{chainPrerouting, chainOutput} {
		rules, err := nc.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			continue // no table or no chain: no rules
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

// Leave ends VM vm's membership of the NAT network whose state is dir,
// as the membership's record (hostnet.NATMemberObject) has them, after its
// vmrun died; see leave.
func Leave(dir, vm string) error { return leave(dir, vm, nil) }

// leave ends VM vm's membership (m is nil when gc does it for a dead
// VM) and, if it was the last member and no tap is left on the bridge,
// removes the NAT network: table, bridge, sysctls.
func leave(dir, vm string, m *membership) error {
	if m != nil {
		defer m.close()
	}
	if err := sameNetns(dir); err != nil {
		return err
	}
	d, err := lockDir(dir, false)
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
	id, err := hostnet.NetnsID()
	if err != nil {
		return err
	}
	if filepath.Base(dir) != id {
		return fmt.Errorf("the NAT state %s belongs to another network namespace (this one is %s); run vmrun gc in that namespace", dir, id)
	}
	return nil
}

// Sweep is gc's pass over the NAT state of the calling thread's
// namespace: it forgets dead members and removes the network when none is
// left.
func Sweep(root string) error {
	dir, err := StateDir(root)
	if err != nil {
		return err
	}
	d, err := lockLeft(dir)
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

// ForgetNetns removes the NAT state directory of the network namespace
// named id (hostnet.NetnsID's form) under runtime root root, if there is
// one: for gc, once it has found that namespace gone, and with it the
// bridge, the table and the sysctls the directory records. Nothing else is
// undone.
func ForgetNetns(root, id string) error {
	if id == "" || strings.ContainsAny(id, "/.") {
		return fmt.Errorf("not a network namespace id: %q", id)
	}
	d, err := lockLeft(filepath.Join(root, ".nat", id))
	if err != nil || d == nil {
		return err
	}
	defer d.unlock()
	return d.remove()
}

// lockLeft locks the NAT state directory dir if it exists, taking over one
// that has no lock file (what a crash while the directory was made or
// removed leaves); nil, nil when there is none.
func lockLeft(dir string) (*lockedDir, error) {
	d, err := lockDir(dir, false)
	if err == nil && d == nil {
		if _, serr := os.Stat(dir); serr == nil {
			d, err = lockDir(dir, true)
		}
	}
	return d, err
}

// teardown removes the shared objects (reverse order) and the directory,
// unless a tap is still on the bridge (a VM of another runtime root).
func (d *lockedDir) teardown() error {
	h, err := hostnet.NewHandle()
	if err != nil {
		return err
	}
	ports, err := bridgePorts(h, Bridge)
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
	left, err := undoShared(st.Objects)
	if err != nil {
		st.Objects = left
		return errors.Join(err, d.writeShared(st, true))
	}
	return d.remove()
}

// undoShared undoes the NAT network's shared objects (state.json: the
// bridge, its sysctls, IPv4 forwarding, the table) in reverse order and
// returns those that could not be undone, in their original order. A
// bridge that is no longer vmrun's is left alone, reported and forgotten.
func undoShared(objs []rundir.Object) (left []rundir.Object, err error) {
	return hostnet.UndoEach(objs, undoSharedObject)
}

// undoSharedObject undoes one of the NAT network's shared objects.
func undoSharedObject(h *netlink.Handle, o rundir.Object) error {
	switch o.Kind {
	case hostnet.ObjLink:
		return hostnet.DeleteOwnedLink(h, o)
	case hostnet.ObjSysctl:
		return hostnet.UndoSysctl(h, o)
	case hostnet.ObjNftTable:
		return DeleteTable(o)
	default:
		return fmt.Errorf("%w %q", hostnet.ErrUnknownObject, o.Kind)
	}
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

// DeleteTable deletes the recorded table if it exists.
func DeleteTable(o rundir.Object) error {
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

// RenderTable returns the rules of vmrun's table in the calling
// thread's network namespace, one "chain: rule" line each, in nft syntax
// (nil when there is no table).
func RenderTable() ([]string, error) {
	nc, err := nftables.New()
	if err != nil {
		return nil, err
	}
	t := vmrunTable()
	if tt, err := nc.ListTableOfFamily(tableName, nftables.TableFamilyIPv4); err != nil || tt == nil {
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
