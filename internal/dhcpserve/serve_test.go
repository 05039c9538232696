package dhcpserve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/vmrun/vmrun/internal/udpframe"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/testutil"
)

// rig is a "host" namespace whose link hostIf (the stand-in for the tap)
// is a veth to eth0 in a "guest" namespace; eth0 has testGuestMAC.
type rig struct {
	host, guest *testutil.Netns
	hostIf      string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{host: testutil.NewNetns(t, "dh"), guest: testutil.NewNetns(t, "dg"), hostIf: "vmrt0"}
	testutil.Veth(t, r.host, r.hostIf, r.guest, "eth0")
	r.host.MustRun(t, "ip", "link", "set", r.hostIf, "address", testHostMAC.String())
	r.guest.MustRun(t, "ip", "link", "set", "eth0", "address", testGuestMAC.String())
	return r
}

// served is a running responder.
type served struct {
	acks chan net.IP
	log  *testutil.LineBuffer
}

// serve runs a responder for cfg inside ns until the test ends.
func serve(t *testing.T, ns *testutil.Netns, cfg Config) *served {
	t.Helper()
	s := &served{acks: make(chan net.IP, 16), log: testutil.NewLineBuffer()}
	cfg.Logf = func(format string, args ...any) {
		fmt.Fprintf(s.log, format+"\n", args...)
	}
	cfg.OnAck = func(ip net.IP) {
		select {
		case s.acks <- ip:
		default:
		}
	}
	var srv *Server
	if err := ns.Do(func() (err error) { srv, err = New(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(waitBound):
			t.Errorf("Serve did not return within %s after its context ended", waitBound)
		}
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("responder log:\n%s", s.log.String())
		}
	})
	return s
}

// udhcpcScript prints the environment busybox udhcpc hands its script.
const udhcpcScript = `#!/bin/sh
echo "event $1"
case "$1" in bound|renew)
	for v in interface ip subnet mask router dns domain lease serverid staticroutes mtu; do
		eval "echo \"env $v=\$$v\""
	done;;
esac
`

// waitBound bounds the tests' waits for an answer, a log line or a
// goroutine: generous, so that a loaded machine does not fail a test that
// would pass; it only ends a wait for something that is not coming. The
// DHCP clients retry for about as long (udhcpc: 20 tries 2 s apart;
// nclient4: 3 tries of 5 s) and stop at the first answer.
const waitBound = time.Minute

// udhcpc runs busybox udhcpc once on eth0 in ns and returns what its script
// saw in the "bound" event.
func udhcpc(t *testing.T, ns *testutil.Netns, args ...string) (map[string]string, string, error) {
	t.Helper()
	testutil.RequireCmd(t, "busybox")
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	argv := append([]string{"udhcpc", "-i", "eth0", "-n", "-q", "-s", script, "-O", "staticroutes"}, args...)
	out, err := ns.Command(ctx, "busybox", argv...).CombinedOutput()
	env := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "env "), "="); ok && strings.HasPrefix(l, "env ") {
			env[k] = v
		}
	}
	return env, string(out), err
}

// captured is a DHCP reply seen on the guest's link.
type captured struct {
	Type   dhcpv4.MessageType
	DstMAC net.HardwareAddr
	DstIP  net.IP
}

func (c captured) String() string { return fmt.Sprintf("%s to %s/%s", c.Type, c.DstMAC, c.DstIP) }

// capture records the DHCP replies arriving on iface in ns until the
// returned function is called; that function returns them. Replies the
// kernel queued but the reader has not read yet would be lost when the
// socket closes: the function first waits (within waitBound) until a reply
// of each type it is given has been read.
func capture(t *testing.T, ns *testutil.Netns, iface string) func(until ...dhcpv4.MessageType) []captured {
	t.Helper()
	filter, err := udpframe.PortFilter(clientPort)
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
		seen []captured
		wake = make(chan struct{}) // closed and replaced at each reply read
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<16)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
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
			seen = append(seen, captured{m.MessageType(), d.DstMAC, d.Dst})
			close(wake)
			wake = make(chan struct{})
			mu.Unlock()
		}
	}()
	// has reports whether a reply of each type in until was read, and
	// returns a channel closed at the next reply.
	has := func(until []dhcpv4.MessageType) (bool, <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		types := map[dhcpv4.MessageType]bool{}
		for _, c := range seen {
			types[c.Type] = true
		}
		for _, ty := range until {
			if !types[ty] {
				return false, wake
			}
		}
		return true, wake
	}
	var once sync.Once
	stop := func(until ...dhcpv4.MessageType) []captured {
		timeout := time.After(waitBound)
	wait:
		for {
			ok, next := has(until)
			if ok {
				break
			}
			select {
			case <-next:
			case <-timeout:
				t.Errorf("no %v reply read on %s within %s", until, iface, waitBound)
				break wait
			}
		}
		once.Do(func() { conn.Close(); wg.Wait() })
		mu.Lock()
		defer mu.Unlock()
		return append([]captured(nil), seen...)
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestServeUdhcpc serves busybox udhcpc in a guest namespace through a veth
// pair that stands in for the tap.
func TestServeUdhcpc(t *testing.T) {
	testutil.RequireRoot(t)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	t.Run("routed /32 with option 121, broadcast flag", func(t *testing.T) {
		r := newRig(t)
		cfg := routedConfig()
		s := serve(t, r.host, cfg)
		stop := capture(t, r.guest, "eth0")
		start := time.Now()
		env, out, err := udhcpc(t, r.guest, "-B", "-t", "20", "-T", "2")
		t.Logf("udhcpc took %s", time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("udhcpc: %v\n%s\n%s", err, out, s.log.String())
		}
		for k, want := range map[string]string{
			"ip": "10.99.0.77", "subnet": "255.255.255.255", "mask": "32", "router": "169.254.0.1",
			"serverid": "169.254.0.1", "dns": "10.99.0.53", "domain": "vm.test", "lease": "600", "mtu": "1400",
			"staticroutes": "169.254.0.1/32 0.0.0.0 0.0.0.0/0 169.254.0.1",
		} {
			if got := env[k]; got != want {
				t.Errorf("udhcpc env %s=%q, want %q\n%s", k, got, want, out)
			}
		}
		select {
		case ip := <-s.acks:
			if !ip.Equal(cfg.Lease.IP) {
				t.Errorf("OnAck(%s), want %s", ip, cfg.Lease.IP)
			}
		case <-time.After(waitBound):
			t.Errorf("OnAck was not called within %s", waitBound)
		}
		replies := stop(dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck)
		types := map[dhcpv4.MessageType]bool{}
		for _, c := range replies {
			types[c.Type] = true
			if !bytes.Equal(c.DstMAC, bcast) || !c.DstIP.Equal(net.IPv4bcast) {
				t.Errorf("reply %s; with the broadcast flag it must be broadcast", c)
			}
		}
		if !types[dhcpv4.MessageTypeOffer] || !types[dhcpv4.MessageTypeAck] {
			t.Errorf("captured %v; want an OFFER and an ACK", replies)
		}
	})

	t.Run("plain /24 with router, unicast", func(t *testing.T) {
		r := newRig(t)
		cfg := Config{Link: r.hostIf, ClientMAC: testGuestMAC, Lease: Lease{
			IP: net.IPv4(10, 99, 1, 77), Mask: net.CIDRMask(24, 32), Router: net.IPv4(10, 99, 1, 1),
			DNS: []net.IP{net.IPv4(10, 99, 1, 1)},
		}}
		s := serve(t, r.host, cfg)
		stop := capture(t, r.guest, "eth0")
		env, out, err := udhcpc(t, r.guest, "-t", "20", "-T", "2")
		if err != nil {
			t.Fatalf("udhcpc: %v\n%s\n%s", err, out, s.log.String())
		}
		for k, want := range map[string]string{
			"ip": "10.99.1.77", "subnet": "255.255.255.0", "mask": "24", "router": "10.99.1.1",
			"serverid": "10.99.1.1", "dns": "10.99.1.1", "lease": "3600", "staticroutes": "",
		} {
			if got := env[k]; got != want {
				t.Errorf("udhcpc env %s=%q, want %q\n%s", k, got, want, out)
			}
		}
		replies := stop(dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck)
		if len(replies) < 2 {
			t.Errorf("captured %v; want an OFFER and an ACK", replies)
		}
		for _, c := range replies {
			if !bytes.Equal(c.DstMAC, testGuestMAC) || !c.DstIP.Equal(cfg.Lease.IP) {
				t.Errorf("reply %s; without the broadcast flag it must be unicast to %s/%s", c, testGuestMAC, cfg.Lease.IP)
			}
		}
	})

	t.Run("another MAC gets no answer", func(t *testing.T) {
		r := newRig(t)
		cfg := routedConfig()
		cfg.Link = r.hostIf
		cfg.ClientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
		s := serve(t, r.host, cfg)
		stop := capture(t, r.guest, "eth0")
		env, out, err := udhcpc(t, r.guest, "-B", "-t", "2", "-T", "1")
		if err == nil || env["ip"] != "" {
			t.Errorf("udhcpc got a lease from a responder for another MAC:\n%s", out)
		}
		if got := stop(); len(got) != 0 {
			t.Errorf("replies on the wire: %v", got)
		}
		if _, err := s.log.WaitFor(`no answer: DISCOVER from 02:00:00:00:00:77, not the guest 02:00:00:00:00:99`, waitBound); err != nil {
			t.Error(err)
		}
	})
}

// TestServeCraftedClient drives the responder with nclient4 from the guest
// namespace: messages udhcpc does not send on its own.
func TestServeCraftedClient(t *testing.T) {
	testutil.RequireRoot(t)
	r := newRig(t)
	cfg := routedConfig()
	s := serve(t, r.host, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()

	newClient := func(opts ...nclient4.ClientOpt) *nclient4.Client {
		var c *nclient4.Client
		opts = append([]nclient4.ClientOpt{nclient4.WithTimeout(5 * time.Second), nclient4.WithRetry(3)}, opts...)
		if err := r.guest.Do(func() (err error) { c, err = nclient4.New("eth0", opts...); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := newClient()
	clientID := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte("\x00guest-77")))

	offer, err := c.DiscoverOffer(ctx, clientID)
	if err != nil {
		t.Fatalf("DISCOVER: %v\n%s", err, s.log.String())
	}
	if !offer.YourIPAddr.Equal(cfg.Lease.IP) {
		t.Errorf("OFFER of %s, want %s", offer.YourIPAddr, cfg.Lease.IP)
	}
	if got := offer.Options.Get(dhcpv4.OptionClientIdentifier); string(got) != "\x00guest-77" {
		t.Errorf("OFFER client id %q, want it echoed", got)
	}

	wrong := net.IPv4(10, 99, 0, 78)
	_, err = c.RequestFromOffer(ctx, offer, clientID, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(wrong)))
	var nak *nclient4.ErrNak
	if !errors.As(err, &nak) {
		t.Fatalf("REQUEST (selecting) for %s: %v; want a NAK", wrong, err)
	}
	t.Logf("NAK says %q", nak.Nak.Message())

	lease, err := c.RequestFromOffer(ctx, offer, clientID)
	if err != nil {
		t.Fatalf("REQUEST (selecting): %v", err)
	}
	if !lease.ACK.YourIPAddr.Equal(cfg.Lease.IP) || lease.ACK.IPAddressLeaseTime(0) != cfg.Lease.LeaseTime {
		t.Errorf("ACK %s", lease.ACK.Summary())
	}

	// RENEWING: ciaddr set; the ACK is unicast to it, which this client
	// receives only because its socket is a packet socket.
	renewed, err := c.Renew(ctx, lease, clientID)
	if err != nil {
		t.Fatalf("REQUEST (renewing): %v", err)
	}
	if !renewed.ACK.YourIPAddr.Equal(cfg.Lease.IP) {
		t.Errorf("renewal ACK %s", renewed.ACK.Summary())
	}

	// INIT-REBOOT for an address that is not the lease.
	reboot, err := dhcpv4.New(dhcpv4.WithHwAddr(testGuestMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithBroadcast(true), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(wrong)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.SendAndRead(ctx, nclient4.DefaultServers, reboot, nil)
	if err != nil || resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST (init-reboot) for %s: %v %v; want a NAK", wrong, resp, err)
	}

	inform, err := c.Inform(ctx, cfg.Lease.IP)
	if err != nil {
		t.Fatalf("INFORM: %v", err)
	}
	if !inform.YourIPAddr.IsUnspecified() || inform.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || !inform.Router()[0].Equal(cfg.Lease.Router) {
		t.Errorf("INFORM answer %s; want an ACK without yiaddr and lease time", inform.Summary())
	}

	if err := c.Release(renewed); err != nil {
		t.Fatal(err)
	}
	if _, err := s.log.WaitFor(`no answer: guest released 10.99.0.77`, waitBound); err != nil {
		t.Error(err)
	}

	other := newClient(nclient4.WithHWAddr(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}), nclient4.WithRetry(1))
	if _, err := other.DiscoverOffer(ctx); !errors.Is(err, nclient4.ErrNoResponse) {
		t.Errorf("DISCOVER from another MAC: %v; want no response", err)
	}
	if n := len(s.acks); n != 2 {
		t.Errorf("OnAck called %d times, want 2 (selecting and renewing; not INFORM)", n)
	}
}

// TestServeTap serves on a real tap (non-persistent, no vnet header): the
// test is the guest, writing frames to the tap's fd and reading the
// answers from it. On a bridge port too, as in NAT mode.
func TestServeTap(t *testing.T) {
	testutil.RequireRoot(t)
	for _, bridged := range []bool{false, true} {
		name := "plain tap"
		if bridged {
			name = "tap on a bridge"
		}
		t.Run(name, func(t *testing.T) {
			ns := testutil.NewNetns(t, "dt")
			const tapName = "vmtap0"
			var fd *os.File
			if err := ns.Do(func() error {
				la := netlink.NewLinkAttrs()
				la.Name = tapName
				tap := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI, Queues: 1, NonPersist: true}
				if err := netlink.LinkAdd(tap); err != nil {
					return fmt.Errorf("create tap: %w", err)
				}
				fd = tap.Fds[0]
				if err := netlink.LinkSetUp(tap); err != nil {
					return err
				}
				if !bridged {
					return nil
				}
				bla := netlink.NewLinkAttrs()
				bla.Name = "vmbr0"
				br := &netlink.Bridge{LinkAttrs: bla}
				if err := netlink.LinkAdd(br); err != nil {
					return fmt.Errorf("create bridge: %w", err)
				}
				if err := netlink.LinkSetMaster(tap, br); err != nil {
					return err
				}
				return netlink.LinkSetUp(br)
			}); err != nil {
				if fd != nil {
					fd.Close()
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { fd.Close() })

			cfg := routedConfig()
			cfg.Link = tapName
			s := serve(t, ns, cfg)
			guest := &tapGuest{t: t, fd: fd}

			discover, err := dhcpv4.NewDiscovery(testGuestMAC)
			if err != nil {
				t.Fatal(err)
			}
			offer, dst := guest.exchange(discover)
			if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(cfg.Lease.IP) {
				t.Fatalf("answer to DISCOVER: %s", offer.Summary())
			}
			if !bytes.Equal(dst.DstMAC, testGuestMAC) || !dst.Dst.Equal(cfg.Lease.IP) || !dst.Src.Equal(cfg.Lease.Router) {
				t.Errorf("OFFER sent %s/%s from %s; want unicast to %s/%s from %s", dst.DstMAC, dst.Dst, dst.Src,
					testGuestMAC, cfg.Lease.IP, cfg.Lease.Router)
			}
			req, err := dhcpv4.NewRequestFromOffer(offer)
			if err != nil {
				t.Fatal(err)
			}
			ack, _ := guest.exchange(req)
			if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(cfg.Lease.IP) {
				t.Fatalf("answer to REQUEST: %s", ack.Summary())
			}
			select {
			case ip := <-s.acks:
				if !ip.Equal(cfg.Lease.IP) {
					t.Errorf("OnAck(%s)", ip)
				}
			case <-time.After(waitBound):
				t.Errorf("OnAck was not called within %s", waitBound)
			}
		})
	}
}

// tapGuest plays the guest on a tap's fd.
type tapGuest struct {
	t  *testing.T
	fd *os.File
}

// exchange writes msg as a broadcast frame and returns the DHCP answer with
// the same transaction ID, and the datagram that carried it.
func (g *tapGuest) exchange(msg *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *udpframe.Datagram) {
	g.t.Helper()
	frame, err := (&udpframe.Datagram{
		SrcMAC: testGuestMAC, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		Src: net.IPv4zero, Dst: net.IPv4bcast, SrcPort: clientPort, DstPort: serverPort,
		Payload: msg.ToBytes(),
	}).Marshal()
	if err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.fd.Write(frame); err != nil {
		g.t.Fatalf("write to tap: %v", err)
	}
	if err := g.fd.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		g.t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, err := g.fd.Read(buf)
		if err != nil {
			g.t.Fatalf("no answer to %s on the tap: %v", msg.MessageType(), err)
		}
		d, err := udpframe.Parse(buf[:n])
		if err != nil || d.DstPort != clientPort {
			continue // IPv6 router solicitations and the like
		}
		m, err := dhcpv4.FromBytes(d.Payload)
		if err == nil && m.TransactionID == msg.TransactionID && m.OpCode == dhcpv4.OpcodeBootReply {
			return m, d
		}
	}
}
