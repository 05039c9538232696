package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/console"
	"github.com/vmrun/vmrun/internal/kvmcheck"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// hostSnapshot is what vmrun may change in a host namespace, each part a
// sorted list of one-line descriptions.
type hostSnapshot map[string][]string

// soakSysctls are the sysctls vmrun sets (or must leave alone), per
// interface where they exist per interface.
var soakSysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv4/conf/*/forwarding", "net/ipv4/conf/*/proxy_arp", "net/ipv4/conf/*/rp_filter",
	"net/ipv4/neigh/*/proxy_delay",
	"net/ipv6/conf/*/forwarding", "net/ipv6/conf/*/accept_ra", "net/ipv6/conf/*/proxy_ndp",
	"net/ipv6/conf/*/disable_ipv6", "net/ipv6/neigh/*/proxy_delay",
}

// takeSnapshot records ns's links (name, kind, alias, master, admin state,
// MTU), addresses, routes of all tables, proxy and permanent neighbour
// entries, nftables tables with their chains, sets and rule counts, the
// sysctls above, and the files under the runtime root.
func takeSnapshot(t *testing.T, ns *testutil.Netns, runtime string) hostSnapshot {
	t.Helper()
	var s hostSnapshot
	// A dump interrupted by a change (the control snapshot is taken while
	// a killed run's links go) is taken again.
	var err error
	for try := 0; try == 0 || errors.Is(err, netlink.ErrDumpInterrupted) && try < 20; try++ {
		s = hostSnapshot{}
		err = ns.Do(func() error { return s.addKernel() })
	}
	if err != nil {
		t.Fatalf("snapshot of %s: %v", ns.Name, err)
	}
	err = filepath.WalkDir(runtime, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// The kernel's answer about link types and KVM's are kept per boot, not per VM;
		// a detached VM's logs are kept after a clean stop, by design.
		if p == filepath.Join(runtime, console.LastRoot) {
			return filepath.SkipDir
		}
		if p != runtime && p != filepath.Join(runtime, netsetup.ProbeCacheFile) && p != filepath.Join(runtime, kvmcheck.CacheFile) {
			s.add("runtime files", p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("runtime root %s: %v", runtime, err)
	}
	for k := range s {
		slices.Sort(s[k])
	}
	return s
}

// addKernel records the calling thread's namespace's kernel state.
func (s hostSnapshot) addKernel() error {
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		up := "down"
		if a.Flags&unix.IFF_UP != 0 {
			up = "up"
		}
		s.add("links", fmt.Sprintf("%s kind=%s alias=%q master=%s %s mtu=%d", a.Name, l.Type(), a.Alias, names[a.MasterIndex], up, a.MTU))
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses: %w", err)
	}
	for _, a := range addrs {
		s.add("addresses", fmt.Sprintf("%s on %s", a.IPNet, names[a.LinkIndex]))
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	for _, r := range routes {
		s.add("routes", fmt.Sprintf("table %d type %d %s via %s dev %s src %s proto %d", r.Table, r.Type, r.Dst, r.Gw, names[r.LinkIndex], r.Src, r.Protocol))
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		proxies, err := h.NeighProxyList(0, fam)
		if err != nil {
			return fmt.Errorf("proxy neighbours: %w", err)
		}
		for _, n := range proxies {
			s.add("proxy neighbours", fmt.Sprintf("%s dev %s", n.IP, names[n.LinkIndex]))
		}
		neighs, err := h.NeighList(0, fam)
		if err != nil {
			return fmt.Errorf("neighbours: %w", err)
		}
		for _, n := range neighs {
			if n.State&netlink.NUD_PERMANENT != 0 {
				s.add("permanent neighbours", fmt.Sprintf("%s lladdr %s dev %s", n.IP, n.HardwareAddr, names[n.LinkIndex]))
			}
		}
	}
	if err := s.addNft(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, pat := range soakSysctls {
		files, _ := filepath.Glob("/proc/sys/" + pat)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue // its link went meanwhile (the control snapshot is taken while a killed run's tap goes)
			}
			if err != nil {
				return err
			}
			s.add("sysctls", strings.TrimPrefix(f, "/proc/sys/")+" = "+strings.TrimSpace(string(b)))
		}
	}
	return nil
}

// addNft records the calling thread's namespace's nftables tables, their
// chains (with hook and rule count) and sets.
func (s hostSnapshot) addNft() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return err
	}
	for _, tb := range tables {
		s.add("nft", fmt.Sprintf("table %d %s", tb.Family, tb.Name))
		sets, err := c.GetSets(tb)
		if err != nil {
			return err
		}
		for _, st := range sets {
			s.add("nft", fmt.Sprintf("set %d %s %s", tb.Family, tb.Name, st.Name))
		}
	}
	chains, err := c.ListChains()
	if err != nil {
		return err
	}
	for _, ch := range chains {
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return err
		}
		s.add("nft", fmt.Sprintf("chain %d %s %s: %d rules", ch.Table.Family, ch.Table.Name, ch.Name, len(rules)))
	}
	return nil
}

func (s hostSnapshot) add(part, line string) { s[part] = append(s[part], line) }

// diff describes how after differs from s: per part, what is left and
// what is gone ("" when they are the same).
func (s hostSnapshot) diff(after hostSnapshot) string {
	parts := map[string]bool{}
	for k := range s {
		parts[k] = true
	}
	for k := range after {
		parts[k] = true
	}
	var keys []string
	for k := range parts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, l := range after[k] {
			if !slices.Contains(s[k], l) {
				fmt.Fprintf(&b, "  %s: left behind: %s\n", k, l)
			}
		}
		for _, l := range s[k] {
			if !slices.Contains(after[k], l) {
				fmt.Fprintf(&b, "  %s: gone (or changed): %s\n", k, l)
			}
		}
	}
	return b.String()
}

// processesIn returns the PIDs of the live processes in ns,
// found by their network namespace, whatever their user (zombies, which
// hold nothing, have no namespace left and are not listed). The test
// process itself is left out: its main thread may have entered ns (Netns.Do
// on the main thread wedges it there).
func processesIn(ns *testutil.Netns) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(ns.Path, &want); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns.Name, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// waitNoProcesses waits until no process is left in ns (a killed vmrun's
// QEMU dies by its parent-death signal, asynchronously; passt exits when
// its socket closes): it waits on each process's exit through a pidfd.
// It returns the processes still there after timeout.
func waitNoProcesses(ns *testutil.Netns, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := processesIn(ns)
		if err != nil {
			return []string{err.Error()}
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var left []string
			for _, pid := range pids {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				left = append(left, fmt.Sprintf("pid %d %s: %s", pid, strings.TrimSpace(string(comm)),
					strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
			}
			return left
		}
		for _, pid := range pids {
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue // gone already
			}
			ms := int(time.Until(deadline).Milliseconds()) + 1
			for {
				_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
				if !errors.Is(err, syscall.EINTR) {
					break
				}
			}
			unix.Close(fd)
		}
	}
}
