package netsetup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dnsforward"
	"github.com/vmrun/vmrun/internal/rundir"
	"golang.org/x/sys/unix"
)

// The NAT network of a network namespace is shared by every NAT VM in it,
// whichever vmrun process runs them. Its state lives in a directory of the
// runtime root named after the namespace (NATStateDir):
//
//	lock            flock'ed around every join and leave
//	state.json      the subnet and the shared objects (bridge, nft table,
//	                sysctls with their old values), recorded before creation
//	members/VM.json one per NAT VM, flock'ed by its vmrun for as long as it
//	                runs: a member whose file nobody locks is dead
//	leases/ADDR     the VM holding each guest address (created O_EXCL)
//
// The last VM to leave (or `vmrun gc`, for dead ones) removes the bridge
// and the table and restores the sysctls — but only while no tap is left on
// the bridge, which also protects the VMs of a vmrun using another runtime
// root.

// natShared is the content of state.json.
type natShared struct {
	Subnet  string          `json:"subnet"`
	Objects []rundir.Object `json:"objects,omitempty"`
}

// natMemberInfo is the content of members/VM.json.
type natMemberInfo struct {
	VM       string    `json:"vm"`
	PID      int       `json:"pid"`
	IP       string    `json:"ip"`
	Forwards []Forward `json:"forwards,omitempty"`
}

// ipForward is the sysctl NAT needs on; it is restored when the last NAT VM leaves.
const ipForward = "net/ipv4/ip_forward"

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14), missing from x/sys/unix.
const soNetnsCookie = 71

// NATStateDir returns the NAT state directory of the calling thread's
// network namespace under runtime root root.
func NATStateDir(root string) (string, error) {
	id, err := netnsID()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".nat", id), nil
}

// netnsID names the calling thread's network namespace: its cookie (never
// reused), or the inode of its nsfs file on kernels without cookies.
func netnsID() (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("network namespace id: %w", err)
	}
	defer unix.Close(fd)
	if c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie); err == nil {
		return "c" + strconv.FormatUint(c, 10), nil
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("network namespace id: %w", err)
	}
	return "i" + strconv.FormatUint(st.Ino, 10), nil
}

// natDir is a locked NAT state directory.
type natDir struct {
	path string
	lock *os.File
}

// lockNATDir creates (if create) and locks dir. It returns nil, nil when
// dir does not exist and create is false.
func lockNATDir(dir string, create bool) (*natDir, error) {
	for {
		if create {
			for _, d := range []string{dir, filepath.Join(dir, "members"), filepath.Join(dir, "leases")} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					return nil, fmt.Errorf("NAT state directory: %w", err)
				}
			}
		}
		flags := os.O_RDWR
		if create {
			flags |= os.O_CREATE
		}
		f, err := os.OpenFile(filepath.Join(dir, "lock"), flags, 0o600)
		if errors.Is(err, os.ErrNotExist) && !create {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("NAT state directory: %w", err)
		}
		if err := flockRetry(f, unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		// The last leaver removes the directory under the lock: a file
		// locked after that is no longer the directory's lock.
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(filepath.Join(dir, "lock"), &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			return &natDir{path: dir, lock: f}, nil
		}
		f.Close()
		if !create {
			return nil, nil
		}
	}
}

func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (d *natDir) unlock() { d.lock.Close() }

func (d *natDir) readShared() (natShared, error) {
	var st natShared
	b, err := os.ReadFile(filepath.Join(d.path, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func (d *natDir) writeShared(st natShared) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(d.path, "state.json"), b)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}

// record appends obj to the shared objects (unless recorded already) and
// writes the state before the object is created.
func (d *natDir) record(st *natShared, obj rundir.Object) error {
	for _, o := range st.Objects {
		if o.Kind == obj.Kind && o.Name == obj.Name {
			return nil
		}
	}
	st.Objects = append(st.Objects, obj)
	return d.writeShared(*st)
}

// member is one members/VM.json: its VM and whether a live vmrun holds it.
type member struct {
	info natMemberInfo
	live bool
}

// members reads every member file; live ones are locked by their vmrun.
func (d *natDir) members() (map[string]member, error) {
	des, err := os.ReadDir(filepath.Join(d.path, "members"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]member{}
	for _, de := range des {
		vm, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok {
			continue
		}
		p := filepath.Join(d.path, "members", de.Name())
		m := member{live: fileLocked(p)}
		if b, err := os.ReadFile(p); err == nil {
			_ = json.Unmarshal(b, &m.info)
		}
		m.info.VM = vm
		out[vm] = m
	}
	return out, nil
}

// fileLocked reports whether another open file description holds a lock
// on path.
func fileLocked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// forget removes what VM vm holds in the directory and in the table: its
// forward rules, its leases and its member file.
func (d *natDir) forget(nc *nftables.Conn, vm string) error {
	errs := []error{deleteVMRules(nc, vm)}
	if des, err := os.ReadDir(filepath.Join(d.path, "leases")); err == nil {
		for _, de := range des {
			p := filepath.Join(d.path, "leases", de.Name())
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == vm {
				errs = append(errs, removeIfExists(p))
			}
		}
	}
	errs = append(errs, removeIfExists(filepath.Join(d.path, "members", vm+".json")))
	return errors.Join(errs...)
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// pruneDead forgets every member no live vmrun holds, except keep.
func (d *natDir) pruneDead(nc *nftables.Conn, keep string, tr *Trace) (live map[string]member, err error) {
	ms, err := d.members()
	if err != nil {
		return nil, err
	}
	live = map[string]member{}
	var errs []error
	for vm, m := range ms {
		switch {
		case m.live:
			live[vm] = m
		case vm != keep:
			tr.event(fmt.Sprintf("NAT: forgetting VM %s, whose vmrun is gone", vm))
			errs = append(errs, d.forget(nc, vm))
		}
	}
	return live, errors.Join(errs...)
}

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
	h, err := newHandle()
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
		tr.event(fmt.Sprintf("NAT: cleaning up after dead VMs: %v", err))
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
	return onThrowawayThread(func() error {
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
					return refuse(ErrBadRequest, "--forward %s: host port %s/%d is already forwarded to NAT VM %s; choose another host port", fw, fw.Proto, fw.HostPort, other)
				}
			}
		}
	}
	return nil
}

// lease returns VM vm's address: the one it already holds, or a new one
// (AllocateIP) claimed with an O_EXCL lease file.
func (d *natDir) lease(subnet netip.Prefix, vm string) (netip.Addr, error) {
	leases := filepath.Join(d.path, "leases")
	des, err := os.ReadDir(leases)
	if err != nil {
		return netip.Addr{}, err
	}
	held := map[netip.Addr]bool{}
	for _, de := range des {
		a, err := netip.ParseAddr(de.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(leases, de.Name())); err == nil && strings.TrimSpace(string(b)) == vm && subnet.Contains(a) {
			return a, nil
		}
		held[a] = true
	}
	for {
		a, err := AllocateIP(subnet, vm, func(a netip.Addr) bool { return held[a] })
		if err != nil {
			return netip.Addr{}, err
		}
		f, err := os.OpenFile(filepath.Join(leases, a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			held[a] = true
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_, werr := f.WriteString(vm + "\n")
		return a, errors.Join(werr, f.Close())
	}
}

// holdMember writes members/VM.json and locks it for the life of this
// process (the lock is what tells other vmruns this VM is alive).
func (d *natDir) holdMember(info natMemberInfo) (*os.File, error) {
	p := filepath.Join(d.path, "members", info.VM+".json")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	b, _ := json.Marshal(info)
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ensureNATNetwork makes sure the bridge (with its address), vmrun's table
// and forwarding exist, creating what is missing and recording it in st
// first. It returns the network's subnet.
func ensureNATNetwork(h *netlink.Handle, nc *nftables.Conn, d *natDir, st *natShared, want string, tr *Trace) (netip.Prefix, error) {
	var wantP netip.Prefix
	if want != "" {
		var err error
		if wantP, err = ParseNATSubnet(want); err != nil {
			return netip.Prefix{}, refuse(ErrBadRequest, "%v", err)
		}
	}
	subnet, exists, err := existingNATBridge(h)
	if err != nil {
		return netip.Prefix{}, err
	}
	if exists {
		if want != "" && wantP != subnet {
			return netip.Prefix{}, refuse(ErrBadRequest, "--nat-subnet %s: the NAT network %s already uses %s; leave --nat-subnet out, or stop the other NAT VMs first", want, NATBridge, subnet)
		}
		table, err := nc.ListTableOfFamily(NATTable, nftables.TableFamilyIPv4)
		if err != nil || table == nil {
			tr.event("NAT: vmrun's nftables table was missing; recreating it")
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
		tr.event(fmt.Sprintf("NAT: created bridge %s with %s and table ip %s", NATBridge, netip.PrefixFrom(NATGateway(subnet), subnet.Bits()), NATTable))
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
	if isNotFound(err) {
		return netip.Prefix{}, false, nil
	}
	if err != nil {
		return netip.Prefix{}, false, err
	}
	if l.Attrs().Alias != NATAlias || l.Type() != "bridge" {
		return netip.Prefix{}, false, refuse(ErrForeignLink, "a link named %s already exists and is not vmrun's NAT bridge (alias %q, type %s); vmrun leaves it alone: delete or rename it to use --net nat", NATBridge, l.Attrs().Alias, l.Type())
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, false, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			ones, _ := a.Mask.Size()
			return netip.PrefixFrom(ip, ones).Masked(), true, nil
		}
	}
	return netip.Prefix{}, false, refuse(ErrForeignLink, "vmrun's NAT bridge %s has no IPv4 address (was it changed by hand?); delete it (ip link del %s) and try again", NATBridge, NATBridge)
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
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
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
		func() error {
			err := h.LinkSetIP6AddrGenMode(br, nl.IN6_ADDR_GEN_MODE_NONE)
			if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
				return nil
			}
			return err
		},
		func() error { return h.AddrAdd(br, addr) },
		func() error {
			return os.WriteFile(filepath.Join("/proc/sys/net/ipv4/conf", NATBridge, "route_localnet"), []byte("1"), 0)
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
	p := filepath.Join("/proc/sys", ipForward)
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if strings.TrimSpace(string(b)) != "0" {
		return nil
	}
	if err := d.record(st, SysctlObject(ipForward, "0")); err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("enable IPv4 forwarding (%s): %w", p, err)
	}
	tr.event("NAT: IPv4 forwarding turned on (off again when the last NAT VM exits)")
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
	h, err := newHandle()
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
	if err := os.RemoveAll(d.path); err != nil {
		return err
	}
	_ = os.Remove(filepath.Dir(d.path)) // .nat, when no other namespace has state there
	return nil
}

// bridgePorts returns the names of the links enslaved to bridge name.
func bridgePorts(h *netlink.Handle, name string) ([]string, error) {
	br, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	links, err := retryDump(h.LinkList)
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
func natSteps() []step {
	n := &natRun{}
	steps := []step{{"nat network", n.join}}
	steps = append(steps, tapSteps()...)
	return append(steps, step{"dhcp", n.serveDHCP}, step{"dns", n.serveDNS}, step{"firewall", n.checkFirewall})
}

// natRun is the state of one NAT VM's set-up.
type natRun struct {
	m *natMember
}

func (n *natRun) join(s *setup) error {
	if s.p.NAT == nil {
		return refuse(ErrBadRequest, "the nat plan has no NAT options")
	}
	dir, err := NATStateDir(rundir.Root())
	if err != nil {
		return err
	}
	obj := NATMemberObject(s.p.Name, dir)
	rec, p := s.rec, s.p
	if err := rec.Record(obj); err != nil {
		return err
	}
	var m *natMember
	s.onUndo(func() error {
		leave := func() error { return natLeave(dir, p.Name, nil) }
		if m != nil {
			leave = m.leave
		}
		if err := leave(); err != nil {
			return fmt.Errorf("leave the NAT network: %w", err)
		}
		return rec.Forget(obj)
	})
	m, err = natJoin(dir, s.p, s.trace)
	if err != nil {
		return err
	}
	n.m = m
	s.trace.notice(fmt.Sprintf("NAT: the guest gets %s/%d on %s; gateway and DNS %s", m.ip, m.subnet.Bits(), NATBridge, m.gw))
	return nil
}

// serveDHCP runs the guest's DHCP responder on its tap until undone.
func (n *natRun) serveDHCP(s *setup) error {
	m := n.m
	srv, err := dhcpserve.New(dhcpserve.Config{
		Link: s.p.LinkName, ClientMAC: s.p.MAC, ServerMAC: NATBridgeMAC,
		Lease: dhcpserve.Lease{
			IP: m.ip.AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32),
			Router: m.gw.AsSlice(), DNS: []net.IP{m.gw.AsSlice()}, ServerID: m.gw.AsSlice(),
		},
		Logf: func(format string, args ...any) { s.trace.event(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ctx); err != nil {
			s.trace.notice(fmt.Sprintf("NAT: the guest's DHCP responder stopped: %v", err))
		}
	})
	s.onUndo(func() error { cancel(); wg.Wait(); return srv.Close() })
	return nil
}

// serveDNS runs a DNS forwarder on the gateway address. It is not fatal
// when it cannot: the guest then has no DNS, and is told why.
func (n *natRun) serveDNS(s *setup) error {
	rc := s.p.NAT.ResolvConf
	if rc == "" {
		rc = DefaultResolvConf
	}
	f, err := dnsforward.Start(dnsforward.Config{
		Addr: dnsforward.Addr(n.m.gw.AsSlice()), ResolvConf: rc,
		Logf: func(format string, args ...any) { s.trace.event(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		s.trace.notice(fmt.Sprintf("NAT: no DNS for the guest: %v", err))
		return nil
	}
	s.onUndo(f.Close)
	return nil
}

// checkFirewall tells the user when another table drops forwarded traffic.
func (n *natRun) checkFirewall(s *setup) error {
	nc, err := nftables.New()
	if err != nil {
		return nil
	}
	chains, err := nc.ListChains()
	if err != nil {
		return nil
	}
	if b := forwardBlockers(chains); len(b) > 0 {
		s.trace.notice(forwardBlockNotice(b))
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
