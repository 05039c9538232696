package dhcpprobe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/vmrun/vmrun/internal/testutil"
)

var (
	hostMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0x61, 0x01}
	guestMAC = net.HardwareAddr{0x52, 0x54, 0, 0x61, 0, 0x07}
)

// probeLAN is a "host" namespace whose uplink up0 is a veth to lan0 in a
// "lan" namespace, where a real dnsmasq serves 10.97.0.0/24, and on up0 a
// macvtap mvt0 with the guest's MAC, as --net auto's attachment has.
type probeLAN struct {
	host, lan *testutil.Netns
	dnsmasq   *testutil.Process
	leases    string // dnsmasq's lease file
}

func newProbeLAN(t testing.TB) *probeLAN {
	t.Helper()
	l := newProbeNets(t)
	l.dnsmasq = testutil.StartDnsmasq(t, l.lan, "lan0", "10.97.0.100", "10.97.0.150")
	l.finish(t)
	return l
}

// newProbeNets makes the namespaces and the veth, without a DHCP server.
func newProbeNets(t testing.TB) *probeLAN {
	t.Helper()
	testutil.RequireRoot(t)
	l := &probeLAN{host: testutil.NewNetns(t, "ph"), lan: testutil.NewNetns(t, "pl")}
	testutil.Veth(t, l.host, "up0", l.lan, "lan0")
	l.host.MustRun(t, "ip", "link", "set", "up0", "address", hostMAC.String())
	l.lan.MustRun(t, "ip", "addr", "add", "10.97.0.1/24", "dev", "lan0")
	return l
}

// finish logs dnsmasq's output on failure, finds its lease file and
// adds the macvtap.
func (l *probeLAN) finish(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", l.dnsmasq.Out.String())
		}
	})
	// StartDnsmasq's lease file: its --dhcp-leasefile= argument.
	for _, a := range l.dnsmasq.Cmd.Args {
		if f, ok := strings.CutPrefix(a, "--dhcp-leasefile="); ok {
			l.leases = f
		}
	}
	l.host.MustRun(t, "ip", "link", "add", "mvt0", "link", "up0", "address", guestMAC.String(), "type", "macvtap", "mode", "bridge")
	l.host.MustRun(t, "ip", "link", "set", "mvt0", "up")
}

// probe runs Run in the host namespace.
func (l *probeLAN) probe(ctx context.Context, link string, mac net.HardwareAddr) (r Result, err error) {
	derr := l.host.Do(func() error {
		r, err = Run(ctx, link, mac, NewXID())
		return nil
	})
	return r, errors.Join(err, derr)
}

// discoverFrom returns a channel closed when a DHCP client message from
// mac (IPv4 UDP to port 67) arrives on link of the LAN namespace: a packet
// socket opened there before it returns, which sees frames before an
// ingress filter could drop them (the macvtap's own IPv6 frames from the
// same MAC do not count).
func (l *probeLAN) discoverFrom(t testing.TB, link string, mac net.HardwareAddr) <-chan struct{} {
	t.Helper()
	var conn *packet.Conn
	err := l.lan.Do(func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, 0x0003, nil) // ETH_P_ALL, network byte order
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	seen := make(chan struct{})
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			f := buf[:n]
			if len(f) >= 38 && bytes.Equal(f[6:12], mac) && f[12] == 0x08 && f[13] == 0x00 && f[23] == 17 && f[36] == 0 && f[37] == 67 {
				close(seen)
				return
			}
		}
	}()
	return seen
}

// packetSockets lists the packet sockets of this process bound to link's
// ifindex in the host namespace (/proc/thread-self/net/packet there).
func (l *probeLAN) packetSockets(t testing.TB, link string) []string {
	t.Helper()
	var out []string
	err := l.host.Do(func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		f, err := os.Open("/proc/thread-self/net/packet")
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sk RefCnt Type Proto Iface R Rmem User Inode
			if fs := strings.Fields(sc.Text()); len(fs) > 4 && fs[4] == fmt.Sprint(ifi.Index) {
				out = append(out, sc.Text())
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// noLease checks that dnsmasq wrote no lease: a DISCOVER commits none.
func (l *probeLAN) noLease(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(l.leases)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != "" {
		t.Errorf("dnsmasq holds a lease after the probe:\n%s", b)
	}
}

// TestProbeAnswered: on a LAN that answers the guest's MAC, the probe's
// first DISCOVER gets dnsmasq's OFFER; nothing is leased, and the socket
// is closed when Run returns.
func TestProbeAnswered(t *testing.T) {
	l := newProbeLAN(t)
	if s := l.packetSockets(t, "mvt0"); len(s) != 0 {
		t.Fatalf("packet sockets on mvt0 before the probe: %q", s)
	}
	r, err := l.probe(context.Background(), "mvt0", guestMAC)
	if err != nil {
		t.Fatal(err)
	}
	first, last := netip.MustParseAddr("10.97.0.100"), netip.MustParseAddr("10.97.0.150")
	if !r.Answered || r.Server != netip.MustParseAddr("10.97.0.1") || r.Offered.Less(first) || last.Less(r.Offered) || r.Tries != 1 {
		t.Fatalf("probe %+v: want an OFFER from 10.97.0.1 in its range to the first DISCOVER", r)
	}
	t.Logf("answered in %s: %s offers %s", r.Took, r.Server, r.Offered)
	// The server saw the guest's MAC (the frame's source and chaddr).
	if _, err := l.dnsmasq.Out.WaitFor(`DHCPOFFER\(lan0\) `+r.Offered.String()+` `+guestMAC.String(), time.Minute); err != nil {
		t.Fatalf("dnsmasq logged no OFFER to %s: %v", guestMAC, err)
	}
	if s := l.packetSockets(t, "mvt0"); len(s) != 0 {
		t.Fatalf("packet sockets on mvt0 after the probe: %q", s)
	}
	l.noLease(t)
}

// TestProbePingingServer: dnsmasq as it ships (it pings an address before
// offering it to a new client, which the test helper's --no-ping turns
// off) answers within the probe's bound. It answers about 3 s after the
// first DISCOVER (dnsmasq 2.90's ping wait): the reason the bound is 6 s.
func TestProbePingingServer(t *testing.T) {
	l := newProbeNets(t)
	dir := t.TempDir()
	l.dnsmasq = l.lan.Start(t, testutil.RequireCmd(t, "dnsmasq"), "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--port=0", "--bind-interfaces", "--interface=lan0", "--except-interface=lo",
		"--dhcp-range=10.97.0.100,10.97.0.150,255.255.255.0,10m", "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--pid-file="+filepath.Join(dir, "pid"), "--log-dhcp", "--log-facility=-", "--user=root")
	if _, err := l.dnsmasq.Out.WaitFor(`DHCP, IP range`, time.Minute); err != nil {
		t.Fatalf("dnsmasq did not start: %v", err)
	}
	l.finish(t)
	r, err := l.probe(context.Background(), "mvt0", guestMAC)
	if err != nil || !r.Answered {
		t.Fatalf("probe against a pinging dnsmasq: %+v, %v; want an answer within %d DISCOVERs", r, err, Tries)
	}
	t.Logf("answered in %s after %d DISCOVERs", r.Took, r.Tries)
	l.noLease(t)
}

// TestProbeRefused: on a LAN that drops frames from MACs but the host's
// (as a cloud network does), the probe sends its DISCOVERs for its whole
// bound and gets nothing, while the same probe from the host's MAC on
// the uplink itself is answered.
func TestProbeRefused(t *testing.T) {
	l := newProbeLAN(t)
	testutil.DropForeignMACs(t, l.lan, "lan0", hostMAC)
	r, err := l.probe(context.Background(), "mvt0", guestMAC)
	if err != nil {
		t.Fatal(err)
	}
	if r.Answered || r.Tries != Tries || r.Took < (Tries-1)*Interval {
		t.Fatalf("probe on a LAN that drops the guest's MAC: %+v; want %d unanswered DISCOVERs over the bound", r, Tries)
	}
	if strings.Contains(l.dnsmasq.Out.String(), guestMAC.String()) {
		t.Fatalf("dnsmasq saw the guest's MAC through the filter:\n%s", l.dnsmasq.Out.String())
	}
	if s := l.packetSockets(t, "mvt0"); len(s) != 0 {
		t.Fatalf("packet sockets on mvt0 after the probe: %q", s)
	}
	host, err := l.probe(context.Background(), "up0", hostMAC)
	if err != nil || !host.Answered {
		t.Fatalf("the same probe from the host's MAC: %+v, %v; want an answer (the filter drops only foreign MACs)", host, err)
	}
	t.Logf("refused: %s; the host's answered in %s", r.Why(), host.Took)
	l.noLease(t)
}

// TestProbeCancelled: a probe whose context ends (the guest's own DHCP
// started) returns at once with the context's error, its socket closed.
func TestProbeCancelled(t *testing.T) {
	l := newProbeLAN(t)
	testutil.DropForeignMACs(t, l.lan, "lan0", hostMAC)
	sent := l.discoverFrom(t, "lan0", guestMAC)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := l.probe(ctx, "mvt0", guestMAC); errc <- err }()
	// Cancel once the probe's socket exists: its first DISCOVER reaching
	// lan0 says so (the LAN's capture sees it before the filter drops it).
	select {
	case <-sent:
	case <-time.After(time.Minute):
		t.Fatal("the probe sent no DISCOVER to lan0")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled probe: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the cancelled probe did not return")
	}
	if s := l.packetSockets(t, "mvt0"); len(s) != 0 {
		t.Fatalf("packet sockets on mvt0 after the cancelled probe: %q", s)
	}
}

// TestProbeNoLink: a link that is gone is an error naming it.
func TestProbeNoLink(t *testing.T) {
	l := newProbeLAN(t)
	_, err := l.probe(context.Background(), "vmrgone0", guestMAC)
	if !errors.Is(err, ErrNoLink) || !strings.Contains(err.Error(), "vmrgone0") {
		t.Fatalf("probe on a missing link: %v", err)
	}
}

// BenchmarkProbeAnswered: a probe's round trip on a LAN that answers
// (dnsmasq in a namespace): what a probe made before QEMU starts would
// add to every --net auto start there (docs/live-uplink.md).
func BenchmarkProbeAnswered(b *testing.B) {
	l := newProbeLAN(b)
	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		r, err := l.probe(context.Background(), "mvt0", guestMAC)
		if err != nil || !r.Answered {
			b.Fatalf("probe: %+v, %v", r, err)
		}
		took = append(took, r.Took)
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}
