// Package fakeguest speaks Ethernet on a tap or macvtap file descriptor the
// way a minimal guest would, so tests can check the datapath without
// booting a VM: it answers ARP and ICMP echo for its address, and it can
// resolve, ping, and take a DHCP lease.
package fakeguest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// VnetHdrLen is the size of the virtio_net_hdr that prefixes every frame
// on a tap opened with IFF_VNET_HDR (and on every macvtap fd).
const VnetHdrLen = 10

// EtherType values.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ErrClosed is returned by operations on a closed Guest.
var ErrClosed = errors.New("fake guest closed")

// Guest is a fake guest on one queue fd.
type Guest struct {
	fs     []*os.File // the queues: it reads all, sends on the first
	mac    net.HardwareAddr
	vnet   bool
	stream bool // frames carry a 4-byte length prefix (QEMU's stream netdev, passt)
	wmu    sync.Mutex

	mu       sync.Mutex
	ip       net.IP
	clientID []byte
	noID     bool // DHCP without a client identifier (ISC dhclient's default)
	unicast  bool // DHCP without the broadcast flag
	waiters  []*waiter

	done chan struct{}
	wg   sync.WaitGroup

	// Counters of what the guest answered and saw.
	ARPReplies, EchoReplies, Received atomic.Int64
}

// waiter is an operation waiting for a frame that matches.
type waiter struct {
	match func(frame []byte) bool
	ch    chan []byte
}

// New starts a fake guest with MAC mac on f (a tap or macvtap fd); vnetHdr
// says whether frames carry a virtio_net_hdr. f must be pollable (tap fds
// from netlink and macvtap fds from os.OpenFile are). Close stops it; the
// caller still owns f.
func New(f *os.File, mac net.HardwareAddr, vnetHdr bool) *Guest {
	return NewQueues([]*os.File{f}, mac, vnetHdr)
}

// NewQueues starts a fake guest on every queue fd of a multiqueue tap,
// macvtap or ipvtap, as a multiqueue guest NIC reads them all (the kernel
// spreads the guest's incoming flows over its queues); it sends on the
// first.
func NewQueues(fs []*os.File, mac net.HardwareAddr, vnetHdr bool) *Guest {
	g := &Guest{fs: fs, mac: mac, vnet: vnetHdr, done: make(chan struct{})}
	for _, f := range fs {
		g.wg.Add(1)
		go g.readLoop(f)
	}
	return g
}

// NewStream starts a fake guest on a connected stream socket that speaks
// QEMU's stream netdev protocol (each frame preceded by its length, 4 bytes
// big-endian), as passt does. f must be non-blocking (pollable).
func NewStream(f *os.File, mac net.HardwareAddr) *Guest {
	g := &Guest{fs: []*os.File{f}, mac: mac, stream: true, done: make(chan struct{})}
	g.wg.Add(1)
	go g.readLoop(f)
	return g
}

// MAC returns the guest's MAC.
func (g *Guest) MAC() net.HardwareAddr { return g.mac }

// SetIP gives the guest an IPv4 address it answers ARP and ping for.
func (g *Guest) SetIP(ip net.IP) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ip = ip.To4()
}

// SetClientID makes DHCP send id as the client identifier (option 61,
// type byte first) instead of the MAC-based default (type 1 + MAC): a guest
// that shares its MAC with the host (ipvtap) needs one of its own.
func (g *Guest) SetClientID(id []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.clientID = append([]byte(nil), id...)
}

// SetNoClientID makes DHCP send no client identifier at all, as ISC
// dhclient does with Debian's default configuration.
func (g *Guest) SetNoClientID() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noID = true
}

// SetBroadcastFlag says whether DHCP asks for broadcast replies (the
// default); without, the server sends them to the offered address.
func (g *Guest) SetBroadcastFlag(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unicast = !on
}

// IP returns the guest's address (nil before SetIP or DHCP).
func (g *Guest) IP() net.IP {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ip
}

// Close stops the reader.
func (g *Guest) Close() error {
	select {
	case <-g.done:
		return nil
	default:
	}
	close(g.done)
	var errs []error
	for _, f := range g.fs {
		errs = append(errs, f.SetReadDeadline(time.Now()))
	}
	g.wg.Wait()
	return errors.Join(errs...)
}

func (g *Guest) readLoop(f *os.File) {
	defer g.wg.Done()
	buf := make([]byte, 65536+VnetHdrLen)
	for {
		n, err := g.readFrame(f, buf)
		if err != nil {
			select {
			case <-g.done:
				return
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		frame := buf[:n]
		if g.vnet {
			if n < VnetHdrLen {
				continue
			}
			frame = frame[VnetHdrLen:]
		}
		g.Received.Add(1)
		g.handle(append([]byte(nil), frame...))
	}
}

// readFrame reads one frame: one read on a tap, or a length-prefixed
// record on a stream.
func (g *Guest) readFrame(f *os.File, buf []byte) (int, error) {
	if !g.stream {
		return f.Read(buf)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > len(buf) {
		return 0, fmt.Errorf("stream frame of %d bytes", n)
	}
	return io.ReadFull(f, buf[:n])
}

// handle answers ARP and echo requests and hands frames to waiters.
func (g *Guest) handle(frame []byte) {
	if len(frame) < 14 {
		return
	}
	ip := g.IP()
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case etherARP:
		g.answerARP(frame, ip)
	case etherIPv4:
		g.answerEcho(frame, ip)
	}
	g.mu.Lock()
	kept := g.waiters[:0]
	var hit []*waiter
	for _, w := range g.waiters {
		if w.match(frame) {
			hit = append(hit, w)
		} else {
			kept = append(kept, w)
		}
	}
	g.waiters = kept
	g.mu.Unlock()
	for _, w := range hit {
		w.ch <- frame
	}
}

// Send writes one Ethernet frame (adding the virtio_net_hdr or the
// stream's length prefix when needed).
func (g *Guest) Send(frame []byte) error {
	switch {
	case g.vnet:
		frame = append(make([]byte, VnetHdrLen), frame...)
	case g.stream:
		frame = append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)
	}
	g.wmu.Lock()
	defer g.wmu.Unlock()
	_, err := g.fs[0].Write(frame)
	return err
}

// SendUDP sends one UDP datagram from the guest's address to dst:dport,
// in a frame to next hop MAC hop.
func (g *Guest) SendUDP(hop net.HardwareAddr, dst net.IP, sport, dport uint16, payload []byte) error {
	return g.Send(ipv4Frame(hop, g.mac, g.IP(), dst.To4(), 17, udp(sport, dport, payload)))
}

// Exchange sends frame every interval until a frame matching match
// arrives, and returns it: for protocols the fake guest does not speak
// itself.
func (g *Guest) Exchange(ctx context.Context, frame []byte, match func([]byte) bool, interval time.Duration) ([]byte, error) {
	return g.exchange(ctx, func() []byte { return frame }, match, interval)
}

// exchange sends frame every interval until a frame matching match
// arrives, and returns it.
func (g *Guest) exchange(ctx context.Context, frame func() []byte, match func([]byte) bool, interval time.Duration) ([]byte, error) {
	w := &waiter{match: match, ch: make(chan []byte, 1)}
	g.mu.Lock()
	g.waiters = append(g.waiters, w)
	g.mu.Unlock()
	defer g.drop(w)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := g.Send(frame()); err != nil {
			return nil, err
		}
		select {
		case f := <-w.ch:
			return f, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.done:
			return nil, ErrClosed
		case <-t.C:
		}
	}
}

func (g *Guest) drop(w *waiter) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			return
		}
	}
}

// Resolve finds the MAC of ip with ARP.
func (g *Guest) Resolve(ctx context.Context, ip net.IP) (net.HardwareAddr, error) {
	ip4 := ip.To4()
	src := g.IP()
	if src == nil {
		return nil, fmt.Errorf("resolve %s: the guest has no address", ip)
	}
	req := func() []byte { return arpFrame(1, g.mac, src, Broadcast, ip4) }
	match := func(f []byte) bool {
		a, ok := parseARP(f)
		return ok && a.op == 2 && a.spa.Equal(ip4)
	}
	f, err := g.exchange(ctx, req, match, 300*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ip, err)
	}
	a, _ := parseARP(f)
	return a.sha, nil
}

// Ping resolves dst and sends ICMP echo requests until one is answered.
func (g *Guest) Ping(ctx context.Context, dst net.IP) error {
	return g.PingVia(ctx, dst, dst)
}

// PingVia pings dst through router hop (whose MAC it resolves): for a
// destination beyond the guest's link, hop is its gateway.
func (g *Guest) PingVia(ctx context.Context, hop, dst net.IP) error {
	mac, err := g.Resolve(ctx, hop)
	if err != nil {
		return err
	}
	src, dst4 := g.IP(), dst.To4()
	id := uint16(time.Now().UnixNano())
	var seq uint16
	req := func() []byte {
		seq++
		return ipv4Frame(mac, g.mac, src, dst4, 1, icmpEcho(8, id, seq, []byte("vmrun fake guest")))
	}
	match := func(f []byte) bool {
		p, ok := parseIPv4(f)
		return ok && p.proto == 1 && p.src.Equal(dst4) && len(p.payload) >= 8 &&
			p.payload[0] == 0 && binary.BigEndian.Uint16(p.payload[4:6]) == id
	}
	if _, err := g.exchange(ctx, req, match, 300*time.Millisecond); err != nil {
		return fmt.Errorf("ping %s: %w", dst, err)
	}
	return nil
}

func (g *Guest) answerARP(frame []byte, ip net.IP) {
	a, ok := parseARP(frame)
	if !ok || a.op != 1 || ip == nil || !a.tpa.Equal(ip) {
		return
	}
	// Count before sending: whoever reads the reply may look at the counter.
	g.ARPReplies.Add(1)
	if g.Send(arpFrame(2, g.mac, ip, a.sha, a.spa)) != nil {
		g.ARPReplies.Add(-1)
	}
}

func (g *Guest) answerEcho(frame []byte, ip net.IP) {
	p, ok := parseIPv4(frame)
	if !ok || ip == nil || p.proto != 1 || !p.dst.Equal(ip) || len(p.payload) < 8 || p.payload[0] != 8 {
		return
	}
	reply := append([]byte(nil), p.payload...)
	reply[0] = 0
	reply[2], reply[3] = 0, 0
	binary.BigEndian.PutUint16(reply[2:], Checksum(reply))
	g.EchoReplies.Add(1)
	if g.Send(ipv4Frame(frame[6:12], g.mac, ip, p.src, 1, reply)) != nil {
		g.EchoReplies.Add(-1)
	}
}

// Announce broadcasts a gratuitous ARP for the guest's address, as a guest
// does after it configures one.
func (g *Guest) Announce() error {
	ip := g.IP()
	if ip == nil {
		return fmt.Errorf("announce: the guest has no address")
	}
	return g.Send(arpFrame(1, g.mac, ip, Broadcast, ip))
}
