package netsetup_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/gc"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"github.com/vmrun/vmrun/netsetup/nat"
	"golang.org/x/sys/unix"
)

// natLab is a lab whose host has an address on its uplink and a default
// route to the LAN, and a private runtime root.
func natLab(t *testing.T) *lab {
	t.Helper()
	l := newLab(t)
	l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
	l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
	t.Setenv(rundir.EnvRoot, t.TempDir())
	return l
}

func natPlan(t *testing.T, name string, fws ...netsetup.Forward) netsetup.Plan {
	t.Helper()
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver "+lanIP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return netsetup.Plan{Name: name, Mode: netsetup.NAT, Parent: netsetup.NATBridge, MAC: netsetup.DeriveMAC(name),
		Queues: 1, LinkName: netsetup.LinkName(name, netsetup.RoleTap), Forwards: fws, NAT: &netsetup.NATOptions{ResolvConf: rc}, RuntimeRoot: rundir.Root()}
}

// natGuest applies a NAT plan and puts a fake guest with a DHCP lease on it.
type natGuest struct {
	att     *netsetup.Attachment
	g       *fakeguest.Guest
	lease   fakeguest.Lease
	notices []string
}

func startNATGuest(t *testing.T, l *lab, p netsetup.Plan) *natGuest {
	t.Helper()
	n := &natGuest{}
	var mu sync.Mutex
	ctx := netsetup.WithTrace(ctxT(t, 30*time.Second), &netsetup.Trace{Notice: func(m string) { mu.Lock(); n.notices = append(n.notices, m); mu.Unlock() }})
	a, err := l.apply(t, ctx, p, nil)
	if err != nil {
		t.Fatalf("apply %s: %v", p.Name, err)
	}
	n.att = a
	n.g = fakeguest.New(a.Files[0], p.MAC, true)
	t.Cleanup(func() { n.g.Close() })
	if n.lease, err = n.g.DHCP(ctxT(t, 20*time.Second)); err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	return n
}

func (n *natGuest) stop(t *testing.T) {
	t.Helper()
	n.g.Close()
	n.att.CloseFiles()
	if err := n.att.Undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
}

// hostNAT is the NAT-relevant state of the lab's host.
func hostNAT(t *testing.T, l *lab) (ipForward string, tables []string, bridgeMAC string) {
	t.Helper()
	err := l.host.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		ipForward = strings.TrimSpace(string(b))
		if err != nil {
			return err
		}
		nc, err := nftables.New()
		if err != nil {
			return err
		}
		ts, err := nc.ListTables()
		for _, tb := range ts {
			tables = append(tables, tb.Name)
		}
		if br, err := netlink.LinkByName(netsetup.NATBridge); err == nil {
			bridgeMAC = br.Attrs().HardwareAddr.String()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ipForward, tables, bridgeMAC
}

// TestNATKernel: two fake guests share the NAT network: leases, the
// gateway, the LAN through masquerade (the LAN has no route back to the
// NAT subnet), each other; the table in the kernel is the one built as
// data; the first leaving keeps the network for the second; the last
// leaving restores everything.
func TestNATKernel(t *testing.T) {
	l := natLab(t)
	a := startNATGuest(t, l, natPlan(t, "nat-ka", netsetup.Forward{Proto: "tcp", HostPort: 8080, GuestPort: 80}))
	b := startNATGuest(t, l, natPlan(t, "nat-kb"))
	gw := net.ParseIP("10.201.0.1")
	for _, n := range []*natGuest{a, b} {
		if !n.lease.Router.Equal(gw) || n.lease.IP.Mask(net.CIDRMask(24, 32)).String() != "10.201.0.0" {
			t.Fatalf("lease %+v", n.lease)
		}
		if err := n.g.Ping(ctxT(t, 10*time.Second), gw); err != nil {
			t.Fatal(err)
		}
		if err := n.g.PingVia(ctxT(t, 10*time.Second), gw, net.ParseIP(lanIP)); err != nil {
			t.Fatalf("LAN through masquerade: %v", err)
		}
	}
	if err := a.g.Ping(ctxT(t, 10*time.Second), b.lease.IP); err != nil {
		t.Fatalf("guest to guest: %v", err)
	}
	var rules []string
	if err := l.host.Do(func() error {
		var err error
		rules, err = nat.RenderTable()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`prerouting: fib daddr type local tcp dport 8080 dnat to ` + a.lease.IP.String() + `:80 comment "vmrun:nat-ka"`,
		`output: fib daddr type local tcp dport 8080 dnat to ` + a.lease.IP.String() + `:80 comment "vmrun:nat-ka"`,
		`postrouting: ip saddr 10.201.0.0/24 oifname != "vmrnat0" masquerade`,
	}
	for _, w := range want {
		if !slices.Contains(rules, w) {
			t.Errorf("the kernel's table lacks %q:\n%s", w, strings.Join(rules, "\n"))
		}
	}
	fwd, tables, mac := hostNAT(t, l)
	if fwd != "1" || !slices.Contains(tables, "vmrun") || mac != nat.BridgeMAC().String() {
		t.Fatalf("while running: ip_forward %s, tables %v, bridge MAC %s", fwd, tables, mac)
	}
	a.stop(t)
	if _, _, mac2 := hostNAT(t, l); mac2 != mac {
		t.Errorf("bridge MAC changed from %s to %s", mac, mac2)
	}
	if err := b.g.PingVia(ctxT(t, 10*time.Second), gw, net.ParseIP(lanIP)); err != nil {
		t.Fatalf("second guest after the first left: %v", err)
	}
	if err := l.host.Do(func() error {
		r, err := nat.RenderTable()
		for _, s := range r {
			if strings.Contains(s, "nat-ka") {
				return fmt.Errorf("rule of the VM that left: %s", s)
			}
		}
		return err
	}); err != nil {
		t.Error(err)
	}
	b.stop(t)
	fwd, tables, mac = hostNAT(t, l)
	if fwd != "0" || len(tables) != 0 || mac != "" {
		t.Errorf("after both left: ip_forward %s, tables %v, bridge MAC %q", fwd, tables, mac)
	}
	l.assertClean(t)
	if es, _ := os.ReadDir(os.Getenv(rundir.EnvRoot)); len(es) != 0 {
		t.Errorf("runtime root not empty: %v", es)
	}
}

// TestNATForwardDropFirewall: a forward-hook chain with policy drop in
// another table (as iptables-nft has it after Docker) stops NAT traffic
// even though vmrun's own table accepts it; vmrun says so, and the fix it
// names (accept rules for the bridge in that chain) makes traffic flow.
func TestNATForwardDropFirewall(t *testing.T) {
	l := natLab(t)
	filter := &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4}
	drop := nftables.ChainPolicyDrop
	fwdChain := &nftables.Chain{Name: "FORWARD", Table: filter, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop}
	nft := func(f func(*nftables.Conn)) {
		t.Helper()
		if err := l.host.Do(func() error {
			nc, err := nftables.New()
			if err != nil {
				return err
			}
			f(nc)
			return nc.Flush()
		}); err != nil {
			t.Fatal(err)
		}
	}
	nft(func(nc *nftables.Conn) { nc.AddTable(filter); nc.AddChain(fwdChain) })
	t.Cleanup(func() { nft(func(nc *nftables.Conn) { nc.DelTable(filter) }) })

	n := startNATGuest(t, l, natPlan(t, "nat-drop"))
	if len(n.notices) < 2 || !strings.Contains(n.notices[len(n.notices)-1], "table ip filter, chain FORWARD: policy drop") {
		t.Fatalf("no notice about the dropping firewall: %q", n.notices)
	}
	gw := net.ParseIP("10.201.0.1")
	if err := n.g.Ping(ctxT(t, 10*time.Second), gw); err != nil {
		t.Fatalf("the gateway is not forwarded traffic: %v", err)
	}
	if err := n.g.PingVia(ctxT(t, 3*time.Second), gw, net.ParseIP(lanIP)); err == nil {
		t.Fatal("the LAN answered although the FORWARD chain drops everything")
	}
	ifname := func(key expr.MetaKey) []expr.Any {
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, netsetup.NATBridge)
		return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
			&expr.Verdict{Kind: expr.VerdictAccept}}
	}
	nft(func(nc *nftables.Conn) {
		nc.InsertRule(&nftables.Rule{Table: filter, Chain: fwdChain, Exprs: ifname(expr.MetaKeyIIFNAME)})
		nc.InsertRule(&nftables.Rule{Table: filter, Chain: fwdChain, Exprs: ifname(expr.MetaKeyOIFNAME)})
	})
	if err := n.g.PingVia(ctxT(t, 10*time.Second), gw, net.ParseIP(lanIP)); err != nil {
		t.Fatalf("with the fix in place: %v", err)
	}
	n.stop(t)
}

// TestNATConcurrentJoins: VMs joining and leaving at once from separate
// goroutines (separate flock'ed files, as separate processes would) get
// distinct addresses, and the network is gone after the last.
func TestNATConcurrentJoins(t *testing.T) {
	l := natLab(t)
	const vms = 6
	ips := make([]string, vms)
	atts := make([]*netsetup.Attachment, vms)
	var joined, left sync.WaitGroup
	errs := make(chan error, 2*vms)
	for i := range vms {
		joined.Go(func() {
			p := natPlan(t, fmt.Sprintf("nat-c%d", i))
			err := l.host.Do(func() error {
				var err error
				atts[i], err = netsetup.Apply(context.Background(), p, nil)
				return err
			})
			if err != nil {
				errs <- err
				return
			}
			g := fakeguest.New(atts[i].Files[0], p.MAC, true)
			lease, err := g.DHCP(ctxT(t, 30*time.Second))
			g.Close()
			ips[i] = lease.IP.String()
			errs <- err
		})
	}
	joined.Wait() // all hold their addresses at once
	for _, a := range atts {
		if a == nil {
			continue
		}
		left.Go(func() {
			a.CloseFiles()
			errs <- l.host.Do(a.Undo)
		})
	}
	left.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	slices.Sort(ips)
	if len(slices.Compact(slices.Clone(ips))) != vms {
		t.Errorf("addresses not distinct: %v", ips)
	}
	if fwd, tables, mac := hostNAT(t, l); fwd != "0" || len(tables) != 0 || mac != "" {
		t.Errorf("after all left: ip_forward %s, tables %v, bridge %q", fwd, tables, mac)
	}
	l.assertClean(t)
}

// TestNATGCRemovesLocklessState: a vmrun killed while it removed the NAT
// state directory (after its lock file, before the directory), or while it
// created it (before the lock file), leaves a directory without a lock
// file, perhaps with empty members/ and leases/, and perhaps an empty .nat.
// `vmrun gc` must remove it (the crash-injection soak found the first case
// left for good).
func TestNATGCRemovesLocklessState(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "g")
	for name, subdirs := range map[string][]string{
		"killed while removing": {"members", "leases"},
		"killed while creating": nil,
		"only .nat left":        {".."},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			var removed []string
			err := ns.Do(func() error {
				dir, err := nat.StateDir(root)
				if err != nil {
					return err
				}
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return err
				}
				for _, s := range subdirs {
					if s == ".." {
						if err := os.Remove(dir); err != nil {
							return err
						}
						continue
					}
					if err := os.Mkdir(filepath.Join(dir, s), 0o700); err != nil {
						return err
					}
				}
				removed, err = gc.GC(root, nil)
				return err
			})
			if err != nil {
				t.Fatalf("gc: %v", err)
			}
			if len(removed) != 0 {
				t.Errorf("gc removed VMs %v, want none", removed)
			}
			var left []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if p != root {
					left = append(left, strings.TrimPrefix(p, root))
				}
				return nil
			})
			if len(left) != 0 {
				t.Errorf("gc left %v in the runtime root", left)
			}
		})
	}
}
