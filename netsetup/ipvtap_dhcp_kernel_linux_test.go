package netsetup_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
	"github.com/vmrun/vmrun/internal/udpframe"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
)

// bootRequest is a DHCP client message seen on the LAN side.
type bootRequest struct {
	typ      dhcpv4.MessageType
	chaddr   net.HardwareAddr
	clientID []byte
}

// lanCapture records every DHCP client message that reaches the LAN
// side's interface (where the LAN's DHCP server reads them).
type lanCapture struct {
	mu   sync.Mutex
	seen []bootRequest
	wake chan struct{}
}

func (e *ipvtapEnv) captureBootRequests(t *testing.T) *lanCapture {
	t.Helper()
	c := &lanCapture{wake: make(chan struct{}, 1)}
	var conn *packet.Conn
	err := e.lan.Do(func() error {
		ifi, err := net.InterfaceByName(e.lanIf)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, 0x0003, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			d, err := udpframe.Parse(buf[:n])
			if err != nil || d.DstPort != 67 {
				continue
			}
			m, err := dhcpv4.FromBytes(d.Payload)
			if err != nil || m.OpCode != dhcpv4.OpcodeBootRequest {
				continue
			}
			c.mu.Lock()
			c.seen = append(c.seen, bootRequest{m.MessageType(), m.ClientHWAddr, m.Options.Get(dhcpv4.OptionClientIdentifier)})
			c.mu.Unlock()
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}()
	return c
}

// all returns what was seen so far.
func (c *lanCapture) all() []bootRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seen)
}

// waitFor waits until a message of type typ with client identifier id was seen.
func (c *lanCapture) waitFor(t *testing.T, typ dhcpv4.MessageType, id []byte, d time.Duration) {
	t.Helper()
	end := time.After(d)
	for {
		for _, r := range c.all() {
			if r.typ == typ && bytes.Equal(r.clientID, id) {
				return
			}
		}
		select {
		case <-c.wake:
		case <-end:
			t.Fatalf("no %s with client identifier %q reached the LAN within %s", typ, id, d)
		}
	}
}

// stationLease is the AP's dnsmasq lease line of the station's own
// address ("" on the veth LAN, whose host has a static address).
func (e *ipvtapEnv) stationLease(t *testing.T) string {
	if !e.wifi {
		return ""
	}
	b, err := os.ReadFile("/tmp/leases")
	if err != nil {
		t.Fatalf("the AP's lease file: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, " "+e.hostIP+" ") {
			return l
		}
	}
	t.Fatalf("no lease of the station's %s in the AP's lease file:\n%s", e.hostIP, b)
	return ""
}

// dhcpFrame is a DHCP client message from the guest, broadcast.
func dhcpFrame(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) []byte {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&udpframe.Datagram{SrcMAC: mac, DstMAC: fakeguest.Broadcast, Src: net.IPv4zero, Dst: net.IPv4bcast,
		SrcPort: 68, DstPort: 67, Payload: m.ToBytes()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIPVtapDHCPProxyVeth(t *testing.T) {
	t.Parallel()
	testIPVtapDHCPProxy(t, vethEnv(t))
}

func TestIPVtapDHCPProxyWiFi(t *testing.T) {
	testIPVtapDHCPProxy(t, wifiEnv(t))
}

// testIPVtapDHCPProxy: guests with DHCP clients as shipped — udhcpc's (the
// MAC as client identifier, no broadcast flag), ISC dhclient's (no
// identifier), one copying the host's identity and asking for the host's
// address, a RELEASE and a DECLINE — all get vmrun's lease, answered by
// vmrun, and no DHCP message of theirs reaches the LAN: every client
// message the LAN sees carries vmrun's identifier for the VM. The host's
// lease (the AP's lease file, on Wi-Fi) is untouched.
func testIPVtapDHCPProxy(t *testing.T, e *ipvtapEnv) {
	capt := e.captureBootRequests(t)
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-proxy"})
	hostLease := e.stationLease(t)
	ctx, log := notices(ctxT(t, 3*time.Minute))
	a, err := e.apply(t, ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Undo()
	vmID := dhcpupstream.VMClientID("ipv-proxy")
	g := fakeguest.NewQueues(a.Files, a.MAC, true)
	defer g.Close()

	// udhcpc as shipped.
	g.SetBroadcastFlag(false)
	lease := guestDHCP(t, ctx, g, "udhcpc's defaults")
	if lease.IP.String() == e.hostIP || lease.Router.String() != e.lanIP {
		t.Fatalf("the guest got %s via %s (the host has %s, the LAN's router is %s)", lease.IP, lease.Router, e.hostIP, e.lanIP)
	}
	waitNotice(t, log, regexp.QuoteMeta(fmt.Sprintf("%s: guest address %s registered (leased from %s with client-id vmrun-ipv-proxy", e.parent, lease.IP, e.lanIP)))
	if err := g.Ping(ctx, net.ParseIP(e.lanIP)); err != nil {
		t.Fatalf("guest → LAN: %v", err)
	}
	if err := e.lan.Ping(lease.IP.String(), 20*time.Second); err != nil {
		t.Fatalf("LAN → guest: %v", err)
	}

	// dhclient as shipped (no identifier), and with the broadcast flag.
	g.SetNoClientID()
	g.SetBroadcastFlag(true)
	if l := guestDHCP(t, ctx, g, "no client identifier"); !l.IP.Equal(lease.IP) {
		t.Errorf("without an identifier the guest got %s, not the VM's %s", l.IP, lease.IP)
	}

	// The host's identity copied, asking for the host's address: vmrun
	// refuses (a NAK from vmrun, not the LAN's server).
	hostIDReq := dhcpFrame(t, a.MAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, a.MAC...))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(e.hostIP))))
	nak, err := g.Exchange(ctx, hostIDReq, func(f []byte) bool {
		d, err := udpframe.Parse(f)
		if err != nil || d.DstPort != 68 {
			return false
		}
		m, err := dhcpv4.FromBytes(d.Payload)
		return err == nil && m.MessageType() == dhcpv4.MessageTypeNak
	}, time.Second)
	if err != nil {
		t.Fatalf("a request for the host's address: %v", err)
	}
	t.Logf("a request for the host's address %s: answered with a NAK from %s", e.hostIP, net.HardwareAddr(nak[6:12]))

	// RELEASE and DECLINE of the guest's address: not passed on.
	if err := g.Release(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := g.Send(dhcpFrame(t, a.MAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(lease.IP)))); err != nil {
		t.Fatal(err)
	}
	if l := guestDHCP(t, ctx, g, "after its release"); !l.IP.Equal(lease.IP) {
		t.Errorf("after its release the guest got %s, not the VM's %s", l.IP, lease.IP)
	}

	proxy, server := dhcpTimes(t, ctx, e, g)
	t.Logf("TIMING guest DHCP through vmrun (DISCOVER → ACK, median of 5): %s; the LAN's server itself: %s", proxy, server)
	if proxy > server+5*time.Millisecond {
		t.Errorf("the guest's DHCP through vmrun takes %s, the server's own %s: more than 5 ms added", proxy, server)
	}

	capt.waitFor(t, dhcpv4.MessageTypeRequest, vmID, time.Minute)
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	capt.waitFor(t, dhcpv4.MessageTypeRelease, vmID, time.Minute)
	// vmrun's identifiers: this VM's, the timing's clients', and (in the
	// rig) the inner VM's that test/wifi boots meanwhile.
	ours := func(id []byte) bool {
		return bytes.Equal(id, vmID) || bytes.Equal(id, dhcpupstream.VMClientID("wifivm")) || strings.HasPrefix(string(id), "\x00vmrun-bench-")
	}
	for _, r := range capt.all() {
		if bytes.Equal(r.chaddr, a.MAC) && !ours(r.clientID) {
			t.Errorf("a %s with client identifier %q reached the LAN from the host's MAC", r.typ, r.clientID)
		}
	}
	if got := e.stationLease(t); got != hostLease {
		t.Errorf("the station's lease changed: %q, was %q", got, hostLease)
	}
	e.assertClean(t)
	t.Logf("notices:\n%s", log)
}

// guestDHCP takes a lease as g is set up, and checks its mask and time.
func guestDHCP(t *testing.T, ctx context.Context, g *fakeguest.Guest, what string) fakeguest.Lease {
	t.Helper()
	l, err := g.DHCP(ctx)
	if err != nil {
		t.Fatalf("DHCP (%s): %v", what, err)
	}
	if l.Mask.String() != "255.255.255.0" || l.Duration <= 0 {
		t.Errorf("DHCP (%s): %s, mask %s, %s", what, l.IP, l.Mask, l.Duration)
	}
	return l
}

// dhcpTimes returns the median time of five guest DHCP exchanges through
// vmrun, and of five exchanges of a client on the parent with the LAN's
// server (DISCOVER, OFFER, REQUEST, ACK, each with its own identifier,
// released again).
func dhcpTimes(t *testing.T, ctx context.Context, e *ipvtapEnv, g *fakeguest.Guest) (proxy, server time.Duration) {
	t.Helper()
	var ps, ss []time.Duration
	for i := range 5 {
		start := time.Now()
		if _, err := g.DHCP(ctx); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, time.Since(start))
		err := e.host.Do(func() error {
			start := time.Now()
			c, err := dhcpupstream.Acquire(ctx, dhcpupstream.Config{Link: e.parent, ClientID: []byte(fmt.Sprintf("\x00vmrun-bench-%d", i))})
			if err != nil {
				return err
			}
			ss = append(ss, time.Since(start))
			return c.Release()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(ps)
	slices.Sort(ss)
	return ps[2], ss[2]
}

// TestIPVtapTwoGuests: two VMs on one parent, each with a DHCP client as
// shipped, get two distinct leases, each reachable from the LAN.
func TestIPVtapTwoGuests(t *testing.T) {
	t.Parallel()
	e := vethEnv(t)
	ctx, log := notices(ctxT(t, 2*time.Minute))
	var ips []string
	for _, name := range []string{"ipv-two-a", "ipv-two-b"} {
		p := e.planIPVtap(t, netsetup.Request{Name: name, NoHostLink: true})
		a, err := e.apply(t, ctx, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Undo()
		g := fakeguest.NewQueues(a.Files, a.MAC, true)
		defer g.Close()
		g.SetBroadcastFlag(false)
		l := guestDHCP(t, ctx, g, name)
		if slices.Contains(ips, l.IP.String()) {
			t.Fatalf("%s got %s, the other guest's address", name, l.IP)
		}
		ips = append(ips, l.IP.String())
	}
	for _, ip := range ips {
		if err := e.lan.Ping(ip, 20*time.Second); err != nil {
			t.Errorf("LAN → %s: %v; notices:\n%s", ip, err, log)
		}
	}
}
