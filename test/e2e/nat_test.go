package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/nat"
)

// peer is a tiny HTTP server a test runs inside a namespace: it answers
// every request with its body and records the address of each client.
type peer struct {
	mu    sync.Mutex
	peers []string
}

// startPeer listens on addr inside ns until the test ends.
func startPeer(t *testing.T, ns *testutil.Netns, addr, body string) *peer {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &peer{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			p.mu.Lock()
			p.peers = append(p.peers, host)
			p.mu.Unlock()
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s\n", len(body)+1, body)
			}()
		}
	}()
	return p
}

func (p *peer) clients() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.peers...)
}

// startDNS runs dnsmasq as a DNS server (no DHCP) on addr inside ns,
// answering NAME with ADDR for each --address=/NAME/ADDR in records.
func startDNS(t *testing.T, ns *testutil.Netns, addr string, records ...string) *testutil.Process {
	t.Helper()
	bin := testutil.RequireCmd(t, "dnsmasq")
	args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--port=53", "--listen-address=" + addr, "--bind-interfaces", "--log-queries", "--log-facility=-",
		"--user=root", "--pid-file=" + filepath.Join(t.TempDir(), "pid")}
	for _, r := range records {
		args = append(args, "--address="+r)
	}
	p := ns.Start(t, bin, args...)
	if _, err := p.Out.WaitFor(`started, version`, time.Minute); err != nil {
		t.Fatalf("dnsmasq did not start: %v\n%s", err, p.Out)
	}
	return p
}

// probeArgs passes vmrun.* probes to the test guest through QEMU's fw_cfg.
func probeArgs(probes ...string) []string {
	return []string{"--qemu-arg=-fw_cfg", "--qemu-arg=name=opt/vmrun/cmdline,string=" + strings.Join(probes, " ")}
}

// hostState is what NAT must leave as it found it.
type hostState struct {
	Links     []string
	IPForward string
	Tables    []string
}

func snapshotHost(t *testing.T, ns *testutil.Netns) hostState {
	t.Helper()
	s := hostState{Links: snapshotLinks(t, ns)}
	err := ns.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		s.IPForward = strings.TrimSpace(string(b))
		if err != nil {
			return err
		}
		nc, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := nc.ListTables()
		for _, tb := range tables {
			s.Tables = append(s.Tables, fmt.Sprintf("%d %s", tb.Family, tb.Name))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func linkMAC(t *testing.T, ns *testutil.Netns, name string) string {
	t.Helper()
	out := ns.MustRun(t, "cat", "/sys/class/net/"+name+"/address")
	return strings.TrimSpace(out)
}

// TestNATEndToEnd boots two test guests on the NAT network of a "host"
// namespace whose uplink is a veth to a "lan" namespace. They get leases
// from their responders, reach a LAN peer through masquerade (which sees
// the host's uplink address), resolve a name through the DNS forwarder
// (against dnsmasq on the LAN, the host's resolver), reach each other, and
// are reachable through --forward from the LAN and from the host's
// loopback. The bridge keeps its MAC when the first guest leaves; after
// both exit, links, table and ip_forward are as before.
func TestNATEndToEnd(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	startDNS(t, l.LAN, "10.77.0.1", "/vmrun.test/10.9.8.7")
	lanPeer := startPeer(t, l.LAN, "10.77.0.1:8081", "lan-peer-ok")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.77.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshotHost(t, l.Host)
	if before.IPForward != "0" {
		t.Fatalf("a fresh namespace has ip_forward %s", before.IPForward)
	}
	runtime := runtimeDir(t)
	natArgs := func(name string, extra ...string) []string {
		return append([]string{"--disk", g.Test, "--snapshot", "--net", "nat", "--resolv-conf", resolv, "--name", name, "--console", "serial"}, extra...)
	}
	a := Start(t, l.Host, runtime, natArgs("nat-a", append([]string{"--forward", "tcp:8080:80"},
		probeArgs("vmrun.lookup=vmrun.test", "vmrun.fetch=http://10.77.0.1:8081/")...)...)...)
	ipA := a.GuestIP(bootTimeout)
	b := Start(t, l.Host, runtime, natArgs("nat-b", probeArgs("vmrun.fetch=http://"+ipA+"/", "vmrun.fetch=http://10.77.0.1:8081/")...)...)
	ipB := b.GuestIP(bootTimeout)
	for _, ip := range []string{ipA, ipB} {
		if !strings.HasPrefix(ip, "10.201.0.") {
			t.Errorf("guest address %s is not from the first candidate subnet 10.201.0.0/24", ip)
		}
	}
	if ipA == ipB {
		t.Fatalf("both guests got %s", ipA)
	}
	// vmrun learns them from its own DHCP responder, whose server is the gateway.
	checkLearnt(t, l.Host, a, "nat-a", ipA, "dhcp", "10.201.0.1", "DHCP from 10.201.0.1)")
	checkLearnt(t, l.Host, b, "nat-b", ipB, "dhcp", "10.201.0.1", "DHCP from 10.201.0.1)")
	a.WaitConsole(`VMRUN-GUEST-DNS=vmrun.test 10\.9\.8\.7`, stepTimeout)
	a.WaitConsole(`VMRUN-GUEST-FETCH=http://10\.77\.0\.1:8081/ lan-peer-ok`, stepTimeout)
	b.WaitConsole(`VMRUN-GUEST-FETCH=http://`+strings.ReplaceAll(ipA, ".", `\.`)+`/ vmrun-guest-ok`, stepTimeout)
	b.WaitConsole(`VMRUN-GUEST-FETCH=http://10\.77\.0\.1:8081/ lan-peer-ok`, stepTimeout)
	if got := lanPeer.clients(); len(got) != 2 || got[0] != "10.77.0.2" || got[1] != "10.77.0.2" {
		t.Errorf("the LAN peer saw clients %v; want the host's uplink address 10.77.0.2 twice (masquerade)", got)
	}
	// --forward tcp:8080:80 of guest A: from the LAN to the host's uplink
	// address, and from the host itself to its loopback.
	if body := httpGet(t, l.LAN, "10.77.0.2:8080"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Errorf("forward from the LAN answered %q", body)
	}
	if body := httpGet(t, l.Host, "127.0.0.1:8080"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Errorf("forward from the host's loopback answered %q", body)
	}
	// The LAN cannot open connections to a guest directly, even with a
	// route to the NAT subnet: only forwarded ports are reachable.
	l.LAN.MustRun(t, "ip", "route", "add", "10.201.0.0/24", "via", "10.77.0.2")
	if err := l.LAN.Do(func() error {
		c, err := net.DialTimeout("tcp", ipB+":80", 2*time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("connected")
		}
		return nil
	}); err != nil {
		t.Errorf("the LAN opened a connection to guest B at %s:80 directly", ipB)
	}
	// Nor use the guests' DNS forwarder (it would resolve with the host's resolvers).
	if err := l.LAN.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion("vmrun.test.", dns.TypeA)
		_, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, "10.201.0.1:53")
		if err == nil {
			return fmt.Errorf("answered")
		}
		return nil
	}); err != nil {
		t.Error("the LAN can use the guests' DNS forwarder")
	}
	brMAC := linkMAC(t, l.Host, netsetup.NATBridge)
	if brMAC != nat.BridgeMAC().String() {
		t.Errorf("bridge MAC %s, want the fixed %s", brMAC, nat.BridgeMAC())
	}

	a.Signal(syscall.SIGTERM)
	if code := a.Wait(exitTimeout); code != 0 {
		t.Fatalf("guest A: exit %d\n%s", code, a.Stderr)
	}
	// B keeps its network: the bridge, its MAC, the table, DNS.
	if got := linkMAC(t, l.Host, netsetup.NATBridge); got != brMAC {
		t.Errorf("bridge MAC changed from %s to %s when guest A left", brMAC, got)
	}
	if body := httpGet(t, l.Host, ipB+":80"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Errorf("guest B after A left answered %q", body)
	}
	if s := snapshotHost(t, l.Host); s.IPForward != "1" || len(s.Tables) != len(before.Tables)+1 {
		t.Errorf("while B runs: %+v", s)
	}
	b.Signal(syscall.SIGTERM)
	if code := b.Wait(exitTimeout); code != 0 {
		t.Fatalf("guest B: exit %d\n%s", code, b.Stderr)
	}
	if after := snapshotHost(t, l.Host); !reflect.DeepEqual(after, before) {
		t.Errorf("host after both exited %+v, before %+v", after, before)
	}
	assertEmptyDir(t, runtime)
}

// TestNATGarbageCollection kills vmrun (and so QEMU) and checks that
// `vmrun gc` removes the NAT network it left.
func TestNATGarbageCollection(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	before := snapshotHost(t, l.Host)
	runtime := runtimeDir(t)
	vm := Start(t, l.Host, runtime, "--disk", g.Test, "--snapshot", "--net", "nat", "--name", "nat-gc", "--forward", "tcp:8080:80")
	vm.GuestIP(bootTimeout)
	if s := snapshotHost(t, l.Host); s.IPForward != "1" || reflect.DeepEqual(s.Tables, before.Tables) {
		t.Fatalf("NAT network not there: %+v", s)
	}
	if err := syscall.Kill(vm.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	vm.Wait(exitTimeout)
	out, errOut, code := RunVMRun(t, l.Host, runtime, "gc")
	if code != 0 || !strings.Contains(out, `removed the leftovers of VM "nat-gc"`) {
		t.Fatalf("gc: exit %d\n%s%s", code, out, errOut)
	}
	// QEMU dies with vmrun (parent-death signal); its tap with it. The
	// bridge goes once no tap is left on it.
	waitFor(t, exitTimeout, func() bool { return reflect.DeepEqual(snapshotHost(t, l.Host), before) }, func() string {
		return fmt.Sprintf("host after gc %+v, before %+v", snapshotHost(t, l.Host), before)
	})
	assertEmptyDir(t, runtime)
}

// waitFor polls cond (a condition the test cannot wait on otherwise)
// until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool, why func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal(why())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
