package dhcpupstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/internal/udpframe"
)

var (
	hostMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	lanMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
	serverIP = net.IPv4(10, 98, 0, 1)
	bcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// waitBound bounds the tests' waits for a lease, a log line or a
// goroutine: generous, so that a loaded machine does not fail a test that
// would pass; it only ends a wait for something that is not coming.
const waitBound = time.Minute

// lan is a "host" namespace whose uplink up0 is a veth to lan0 in a "lan"
// namespace, where dnsmasq serves 10.98.0.0/24.
type lan struct {
	host, lan *testutil.Netns
	dnsmasq   *testutil.Process
}

func newLAN(t *testing.T, dnsmasqArgs ...string) *lan {
	t.Helper()
	testutil.RequireRoot(t)
	l := &lan{host: testutil.NewNetns(t, "uh"), lan: testutil.NewNetns(t, "ul")}
	testutil.Veth(t, l.host, "up0", l.lan, "lan0")
	l.host.MustRun(t, "ip", "link", "set", "up0", "address", hostMAC.String())
	l.lan.MustRun(t, "ip", "link", "set", "lan0", "address", lanMAC.String())
	l.lan.MustRun(t, "ip", "addr", "add", "10.98.0.1/24", "dev", "lan0")
	l.dnsmasq = l.startDnsmasq(t, "10.98.0.100", "10.98.0.150", dnsmasqArgs...)
	return l
}

func (l *lan) startDnsmasq(t *testing.T, first, last string, args ...string) *testutil.Process {
	t.Helper()
	p := testutil.StartDnsmasq(t, l.lan, "lan0", first, last, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", p.Out.String())
		}
	})
	return p
}

// leases returns dnsmasq's lease file: "expiry mac ip hostname client-id" lines.
func leases(t *testing.T, p *testutil.Process) string {
	t.Helper()
	b, err := os.ReadFile(leaseFile(t, p))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// leaseFile is the path of dnsmasq's lease file.
func leaseFile(t *testing.T, p *testutil.Process) string {
	t.Helper()
	for _, a := range p.Cmd.Args {
		if f, ok := strings.CutPrefix(a, "--dhcp-leasefile="); ok {
			return f
		}
	}
	t.Fatal("dnsmasq has no --dhcp-leasefile")
	return ""
}

// leasesWhen waits until dnsmasq's lease file satisfies ok and returns it.
// dnsmasq rewrites the file after it answered (a client can hold its ACK
// before the file says so): the file is read again whenever inotify says
// its directory changed (dnsmasq creates it, then rewrites it in place).
// waitBound only ends a wait for something that is not coming; the
// failure names what was awaited.
func leasesWhen(t *testing.T, p *testutil.Process, what string, ok func(string) bool) string {
	t.Helper()
	f := leaseFile(t, p)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	in := os.NewFile(uintptr(fd), "inotify")
	defer in.Close()
	// Watch before the first read, so that no change is missed.
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(f), unix.IN_CREATE|unix.IN_MODIFY|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		t.Fatalf("inotify on %s: %v", filepath.Dir(f), err)
	}
	changed := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := in.Read(buf); err != nil {
				return // closed
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	timeout := time.After(waitBound)
	for {
		lf := leases(t, p)
		if ok(lf) {
			return lf
		}
		select {
		case <-changed:
		case <-timeout:
			t.Errorf("dnsmasq's lease file %s within %s:\n%s", what, waitBound, lf)
			return lf
		}
	}
}

// hexID is a client identifier as dnsmasq writes it.
func hexID(id []byte) string {
	s := make([]string, len(id))
	for i, b := range id {
		s[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(s, ":")
}

// acquire takes a lease from inside the host namespace, closed (not
// released) at cleanup.
func (l *lan) acquire(t *testing.T, name string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	var c *Client
	start := time.Now()
	if err := l.host.Do(func() (err error) {
		c, err = Acquire(ctx, Config{Link: "up0", ClientID: VMClientID(name), Hostname: name,
			Logf: func(f string, a ...any) { t.Logf(f, a...) }})
		return err
	}); err != nil {
		t.Fatalf("Acquire for %s: %v", name, err)
	}
	t.Logf("Acquire for %s took %s", name, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { c.Close() })
	return c
}

// seen is one DHCP message captured on a link.
type seen struct {
	Type           dhcpv4.MessageType
	SrcIP, DstIP   net.IP
	DstMAC         net.HardwareAddr
	Flags, CIAddr  string
	HasServerIDOpt bool
}

func (s seen) String() string {
	return fmt.Sprintf("%s %s -> %s/%s", s.Type, s.SrcIP, s.DstMAC, s.DstIP)
}

// capture records the DHCP messages to port arriving on iface in ns until
// the returned function is called; it returns them. Messages the kernel
// queued but the reader has not read yet would be lost when the socket
// closes: the function first waits (within waitBound) until at least min
// messages were read.
func capture(t *testing.T, ns *testutil.Netns, iface string, port uint16) func(min int) []seen {
	t.Helper()
	filter, err := udpframe.PortFilter(port)
	if err != nil {
		t.Fatal(err)
	}
	var conn *packet.Conn
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: filter})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		got  []seen
		wake = make(chan struct{}) // closed and replaced at each message read
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<16)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			d, err := udpframe.Parse(buf[:n])
			if err != nil {
				continue
			}
			m, err := dhcpv4.FromBytes(d.Payload)
			if err != nil {
				continue
			}
			mu.Lock()
			got = append(got, seen{m.MessageType(), d.Src, d.Dst, d.DstMAC, m.FlagsToString(), m.ClientIPAddr.String(),
				m.Options.Has(dhcpv4.OptionServerIdentifier)})
			close(wake)
			wake = make(chan struct{})
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop := func(min int) []seen {
		timeout := time.After(waitBound)
	wait:
		for {
			mu.Lock()
			n, next := len(got), wake
			mu.Unlock()
			if n >= min {
				break
			}
			select {
			case <-next:
			case <-timeout:
				t.Errorf("only %d of %d DHCP messages read on %s within %s", n, min, iface, waitBound)
				break wait
			}
		}
		once.Do(func() { conn.Close(); wg.Wait() })
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), got...)
	}
	t.Cleanup(func() { stop(0) })
	return stop
}

// replaceDnsmasq kills the LAN's dnsmasq and starts another serving
// first-last.
func (l *lan) replaceDnsmasq(t *testing.T, first, last string, args ...string) {
	t.Helper()
	old := l.dnsmasq.Cmd.Process
	if err := syscall.Kill(-old.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Once testutil's goroutine has reaped it, port 67 is free.
	select {
	case <-l.dnsmasq.Exited:
	case <-time.After(waitBound):
		t.Fatalf("the killed dnsmasq (pid %d) was not reaped within %s", old.Pid, waitBound)
	}
	l.dnsmasq = l.startDnsmasq(t, first, last, args...)
}

func TestAcquire(t *testing.T) {
	l := newLAN(t)
	replies := capture(t, l.host, "up0", clientPort)
	c := l.acquire(t, "alpha")
	got := c.Lease()
	ip := got.IP.To4()
	if ip == nil || !bytes.Equal(ip[:3], []byte{10, 98, 0}) || ip[3] < 100 || ip[3] > 150 {
		t.Fatalf("lease address %v is not from dnsmasq's range 10.98.0.100-150", got.IP)
	}
	if ones(got.Mask) != 24 || !got.ServerID.Equal(serverIP) || got.LeaseTime != 10*time.Minute ||
		got.T1 < 4*time.Minute || got.T1 > 5*time.Minute || got.T2 < got.T1 || time.Since(got.Acquired) > time.Minute {
		t.Errorf("lease %+v", got)
	}
	if !got.Router.Equal(serverIP) {
		t.Errorf("router %v, want dnsmasq's default %v", got.Router, serverIP)
	}
	// dnsmasq keyed the lease by the client identifier, and took the name.
	want := fmt.Sprintf("%s %s alpha %s", hostMAC, ip, hexID(VMClientID("alpha")))
	leasesWhen(t, l.dnsmasq, fmt.Sprintf("did not show %q", want), func(lf string) bool { return strings.Contains(lf, want) })
	if _, err := l.dnsmasq.Out.WaitFor(`DHCPACK\(lan0\) `+ip.String()+` 02:00:00:00:00:01 alpha`, waitBound); err != nil {
		t.Error(err)
	}
	// The broadcast flag: the OFFER and ACK reached the host as broadcasts,
	// not as unicast to an address it does not own.
	rs := replies(2)
	if len(rs) < 2 {
		t.Errorf("captured replies %v; want an OFFER and an ACK", rs)
	}
	for _, r := range rs {
		if !bytes.Equal(r.DstMAC, bcastMAC) || !r.DstIP.Equal(net.IPv4bcast) {
			t.Errorf("reply %s was not broadcast", r)
		}
	}
}

func TestTwoClientsShareTheMAC(t *testing.T) {
	l := newLAN(t)
	a, b := l.acquire(t, "alpha"), l.acquire(t, "beta")
	ipA, ipB := a.Lease().IP, b.Lease().IP
	if ipA.Equal(ipB) {
		t.Fatalf("both clients got %s; different client identifiers must get different leases", ipA)
	}
	wants := []string{
		fmt.Sprintf("%s %s alpha %s", hostMAC, ipA, hexID(VMClientID("alpha"))),
		fmt.Sprintf("%s %s beta %s", hostMAC, ipB, hexID(VMClientID("beta"))),
	}
	leasesWhen(t, l.dnsmasq, fmt.Sprintf("did not show both %q", wants), func(lf string) bool {
		return strings.Contains(lf, wants[0]) && strings.Contains(lf, wants[1])
	})
}

// TestRenewRebindRelease calls the steps Run takes at T1 and T2 directly
// (dnsmasq's shortest lease is two minutes), then releases.
func TestRenewRebindRelease(t *testing.T) {
	l := newLAN(t)
	c := l.acquire(t, "alpha")
	first := c.Lease()
	// The server answers a renewal at the leased address: as proxy ARP
	// would in routed mode, tell the LAN that address is at the host.
	l.lan.MustRun(t, "ip", "neigh", "replace", first.IP.String(), "lladdr", hostMAC.String(), "dev", "lan0", "nud", "permanent")
	requests := capture(t, l.lan, "lan0", serverPort)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()

	// No pause before: Acquired is the time the renewal was sent, a whole
	// DHCP exchange after the first request (nanosecond clock).
	renewed, err := c.Renew(ctx)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if !renewed.IP.Equal(first.IP) || !renewed.Acquired.After(first.Acquired) || renewed.LeaseTime != 10*time.Minute {
		t.Errorf("renewed lease %+v after %+v", renewed, first)
	}
	rebound, err := c.Rebind(ctx)
	if err != nil {
		t.Fatalf("Rebind: %v", err)
	}
	if !rebound.IP.Equal(first.IP) || !rebound.Acquired.After(renewed.Acquired) {
		t.Errorf("rebound lease %+v", rebound)
	}
	if err := c.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := l.dnsmasq.Out.WaitFor(`DHCPRELEASE\(lan0\) `+first.IP.String()+` 02:00:00:00:00:01`, waitBound); err != nil {
		t.Error(err)
	}
	if got := c.Lease(); got.IP != nil {
		t.Errorf("Lease() after Release = %+v; want the zero Lease", got)
	}
	if _, err := c.Renew(ctx); !errors.Is(err, ErrNoLease) {
		t.Errorf("Renew after Release: %v; want ErrNoLease", err)
	}
	if n := strings.Count(l.dnsmasq.Out.String(), "DHCPACK(lan0) "+first.IP.String()); n != 3 {
		t.Errorf("dnsmasq sent %d ACKs for %s, want 3 (select, renew, rebind)", n, first.IP)
	}
	leasesWhen(t, l.dnsmasq, "still holds the released lease "+first.IP.String(), func(lf string) bool {
		return !strings.Contains(lf, first.IP.String()+" ")
	})

	// What went on the wire: RENEWING unicast to the server (its MAC
	// learnt from its replies) from the leased address; REBINDING
	// broadcast; RELEASE unicast; each with ciaddr and without option 50.
	want := []struct {
		typ    dhcpv4.MessageType
		dstMAC net.HardwareAddr
		dstIP  net.IP
		sid    bool
	}{
		{dhcpv4.MessageTypeRequest, lanMAC, serverIP, false},
		{dhcpv4.MessageTypeRequest, bcastMAC, net.IPv4bcast, false},
		{dhcpv4.MessageTypeRelease, lanMAC, serverIP, true},
	}
	got := requests(3)
	if len(got) != len(want) {
		t.Fatalf("captured %v; want renew, rebind, release", got)
	}
	for i, w := range want {
		g := got[i]
		if g.Type != w.typ || !bytes.Equal(g.DstMAC, w.dstMAC) || !g.DstIP.Equal(w.dstIP) ||
			!g.SrcIP.Equal(first.IP) || g.CIAddr != first.IP.String() || g.HasServerIDOpt != w.sid {
			t.Errorf("message %d: %s ciaddr %s server-id %v; want %s from %s to %s/%s, server-id %v",
				i, g, g.CIAddr, g.HasServerIDOpt, w.typ, first.IP, w.dstMAC, w.dstIP, w.sid)
		}
	}
}

// TestRun lets Run renew on dnsmasq's short T1, then has a new dnsmasq
// with another range refuse the renewal, so Run must take a new lease.
func TestRun(t *testing.T) {
	short := []string{"--dhcp-option=option:T1,2", "--dhcp-option=option:T2,4"}
	l := newLAN(t, short...)
	c := l.acquire(t, "alpha")
	first := c.Lease()
	// dnsmasq 2.90 sends T1 3s for a configured 2s (and T2 4s as set).
	if first.T1 > 5*time.Second || first.T2 > 5*time.Second {
		t.Fatalf("T1 %s T2 %s; want dnsmasq's configured few seconds", first.T1, first.T2)
	}
	l.lan.MustRun(t, "ip", "neigh", "replace", first.IP.String(), "lladdr", hostMAC.String(), "dev", "lan0", "nud", "permanent")

	changes := make(chan Lease, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func(l Lease) { changes <- l }) }()
	var stopOnce sync.Once
	stopRun := func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitBound):
				t.Errorf("Run did not return within %s after its context ended", waitBound)
			}
		})
	}
	defer stopRun()

	next := func(what string) Lease {
		t.Helper()
		select {
		case l := <-changes:
			return l
		case <-time.After(waitBound):
			t.Fatalf("no %s within %s (T1 %s, T2 %s)", what, waitBound, first.T1, first.T2)
			return Lease{}
		}
	}
	start := time.Now()
	r := next("renewal at T1")
	if !r.IP.Equal(first.IP) {
		t.Errorf("renewal changed the address to %s", r.IP)
	}
	t.Logf("first renewal %s after Run started (T1 = %s)", time.Since(start).Round(time.Millisecond), first.T1)

	// Replace the server: the new one (authoritative) refuses the old
	// address, so Run must start over and get one from the new range.
	l.replaceDnsmasq(t, "10.98.0.200", "10.98.0.210", short...)
	var moved Lease
	for deadline := time.Now().Add(waitBound); time.Now().Before(deadline); {
		if moved = next("new lease after a NAK"); !moved.IP.Equal(first.IP) {
			break
		}
	}
	if ip := moved.IP.To4(); ip == nil || ip[3] < 200 || ip[3] > 210 {
		t.Fatalf("after the NAK Run holds %v; want an address of the new range", moved.IP)
	}
	if _, err := l.dnsmasq.Out.WaitFor(`DHCPNAK\(lan0\) `+first.IP.String(), waitBound); err != nil {
		t.Error(err)
	}
	stopRun()
	if err := c.Release(); err != nil {
		t.Error(err)
	}
}

// TestReacquire: a running Run holds a ten-minute lease (T1 five minutes
// away) when the LAN's server is replaced by one with another range (a
// new network behind the same link); Reacquire must have Run take a lease
// from the new server at once, by DISCOVER, without a RELEASE to the old.
func TestReacquire(t *testing.T) {
	l := newLAN(t)
	c := l.acquire(t, "alpha")
	first := c.Lease()
	changes := make(chan Lease, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func(l Lease) { changes <- l }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	l.replaceDnsmasq(t, "10.98.0.200", "10.98.0.210")
	start := time.Now()
	c.Reacquire()
	select {
	case got := <-changes:
		if ip := got.IP.To4(); ip == nil || ip[3] < 200 || ip[3] > 210 {
			t.Fatalf("after Reacquire Run holds %v (had %v); want an address of the new range", got.IP, first.IP)
		}
		t.Logf("new lease %s %s after Reacquire", got.IP, time.Since(start).Round(time.Millisecond))
	case <-time.After(waitBound):
		t.Fatalf("no new lease within %s of Reacquire (T1 %s)", waitBound, first.T1)
	}
	if _, err := l.dnsmasq.Out.WaitFor(`DHCPDISCOVER\(lan0\) `+first.IP.String(), waitBound); err != nil {
		t.Errorf("the new server saw no DISCOVER asking for the old address: %v", err)
	}
	if strings.Contains(l.dnsmasq.Out.String(), "DHCPRELEASE") {
		t.Errorf("Reacquire released a lease:\n%s", l.dnsmasq.Out)
	}
}

// TestRebootWhenUnicastIsLost: without a neighbour entry for the leased
// address the LAN cannot deliver the server's unicast answer to a
// renewal; the init-reboot request Run falls back to is answered by
// broadcast.
func TestRebootWhenUnicastIsLost(t *testing.T) {
	l := newLAN(t)
	c := l.acquire(t, "alpha")
	first := c.Lease()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Renew(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Renew with the answer undeliverable: %v; want a timeout", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	got, err := c.reboot(ctx)
	if err != nil {
		t.Fatalf("init-reboot request: %v", err)
	}
	if !got.IP.Equal(first.IP) || !got.Acquired.After(first.Acquired) {
		t.Errorf("lease after init-reboot %+v, before %+v", got, first)
	}
	if n := strings.Count(l.dnsmasq.Out.String(), "DHCPACK(lan0) "+first.IP.String()); n < 2 {
		t.Errorf("dnsmasq sent %d ACKs for %s, want 2 or more", n, first.IP)
	}
}

// TestBroadcastRenew: with BroadcastRenew, Run renews at T1 as a
// rebooting client asks (no ciaddr, no server identifier, the broadcast
// flag), and the server's broadcast answer arrives although the LAN has no
// neighbour entry for the leased address (as on ipvtap while the guest does
// not answer ARP for it): the first message after the lease is that
// request (not a unicast renewal that gets lost), no attempt fails, and
// dnsmasq's lease file shows the later expiry.
func TestBroadcastRenew(t *testing.T) {
	l := newLAN(t, "--dhcp-option=option:T1,2", "--dhcp-option=option:T2,4")
	var logMu sync.Mutex
	var logged []string
	cfg := Config{Link: "up0", ClientID: VMClientID("alpha"), Hostname: "alpha", BroadcastRenew: true,
		Logf: func(f string, a ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			logged = append(logged, fmt.Sprintf(f, a...))
			t.Logf(f, a...)
		}}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	var c *Client
	if err := l.host.Do(func() (err error) { c, err = Acquire(ctx, cfg); return err }); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer c.Close()
	first := c.Lease()
	if first.T1 > 5*time.Second || first.T2 > 5*time.Second {
		t.Fatalf("T1 %s T2 %s; want dnsmasq's configured few seconds", first.T1, first.T2)
	}
	// expiry is the lease's expiry in lease file lf, 0 when it has none.
	expiry := func(lf string) int64 {
		for _, line := range strings.Split(lf, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[2] == first.IP.String() {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
		return 0
	}
	before := expiry(leasesWhen(t, l.dnsmasq, "has no lease of "+first.IP.String(), func(lf string) bool { return expiry(lf) != 0 }))
	requests := capture(t, l.lan, "lan0", serverPort)

	changes := make(chan Lease, 4)
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx, func(l Lease) { changes <- l }) }()
	var r Lease
	select {
	case r = <-changes:
	case <-time.After(waitBound):
		t.Fatalf("no renewal within %s (T1 %s)", waitBound, first.T1)
	}
	stopRun()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !r.IP.Equal(first.IP) {
		t.Errorf("renewed lease %+v; want %s renewed", r, first.IP)
	}
	logMu.Lock()
	for _, m := range logged {
		if strings.Contains(m, " for "+first.IP.String()+": ") {
			t.Errorf("a failed attempt: %s", m)
		}
	}
	logMu.Unlock()
	got := requests(1)
	if len(got) == 0 {
		t.Fatal("no renewal captured at the server")
	}
	if g := got[0]; g.Type != dhcpv4.MessageTypeRequest || g.CIAddr != "0.0.0.0" || g.HasServerIDOpt ||
		!bytes.Equal(g.DstMAC, bcastMAC) || !strings.Contains(g.Flags, "Broadcast") {
		t.Errorf("renewal %s ciaddr %s flags %s server-id %v; want a broadcast REQUEST with no ciaddr, the broadcast flag, no server identifier",
			g, g.CIAddr, g.Flags, g.HasServerIDOpt)
	}
	leasesWhen(t, l.dnsmasq, fmt.Sprintf("shows no later expiry of %s than %d", first.IP, before), func(lf string) bool { return expiry(lf) > before })
}
