// Package dhcpprobe asks the LAN, from the guest's MAC, whether it answers
// that MAC's DHCP: --net auto's probe of a macvtap attachment, made beside
// the guest's boot so that a LAN that refuses MACs it did not assign is
// known seconds before the guest's own DHCP could tell
// (internal/dhcpverdict; the figures and the choice are in
// docs/live-uplink.md).
//
// The probe is a DHCPDISCOVER with the guest's MAC as Ethernet source and
// chaddr, the broadcast flag and a random transaction id, sent through a
// packet socket on the macvtap's own netdev: the macvlan driver transmits
// it out of the parent, and the LAN's answers reach the socket on the
// macvtap (packet sockets see a frame before the tap's rx handler queues
// it for QEMU). An OFFER with that xid for that chaddr is the answer. A
// DISCOVER commits no lease: it carries no client identifier, and the
// probe never sends a REQUEST, so no lease is written (dnsmasq writes its
// lease at the ACK of a REQUEST; an ISC or Kea server at most holds the
// offered address aside for a while).
//
// The bound: Tries DISCOVERs, Interval apart, the same xid in each, and
// an answer to any of them counts until Interval after the last (6 s in
// all). A server that checks an address before offering it delays its
// first OFFER to a new client: dnsmasq as it ships pings the address and
// answers about 3 s after the first DISCOVER (TestProbePingingServer), ISC
// dhcpd's ping-check waits 1 s; 6 s leaves a margin over both.
package dhcpprobe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
)

// EnvOff, set to "off", makes Start probe nothing: the guest's own DHCP
// alone decides (as before the probe; for measurements and bug reports).
const EnvOff = "VMRUN_DHCP_PROBE"

// The probe's bound.
const (
	Tries    = 6
	Interval = time.Second
)

// Result is what a probe found.
type Result struct {
	Answered bool
	Server   netip.Addr // the OFFER's server identifier
	Offered  netip.Addr // its yiaddr: offered, not leased
	Tries    int        // DISCOVERs sent
	Took     time.Duration
}

// Why says, for a switch's line, that the LAN did not answer.
func (r Result) Why() string {
	return fmt.Sprintf("no DHCP answer to vmrun's probe from the guest's MAC in %.0f s, %d DISCOVERs", r.Took.Seconds(), r.Tries)
}

// NewXID returns a random transaction id.
func NewXID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// ErrNoLink: the link to probe on does not exist (the attachment went).
var ErrNoLink = errors.New("no such link")

// Run probes on link (a macvtap, in the calling thread's network
// namespace) from mac with transaction id xid, until an OFFER comes or
// the bound passes (Answered false), or ctx ends (its error). The socket
// is closed when Run returns.
func Run(ctx context.Context, link string, mac net.HardwareAddr, xid uint32) (Result, error) {
	start := time.Now()
	nc, err := open(link, mac)
	if err != nil {
		return Result{}, err
	}
	defer nc.Close()
	r := Result{}
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], xid)
	for r.Tries < Tries {
		r.Tries++
		offer, err := nc.DiscoverOffer(ctx, dhcpv4.WithTransactionID(id), dhcpv4.WithBroadcast(true))
		switch {
		case err == nil && offer.MessageType() == dhcpv4.MessageTypeOffer && net.HardwareAddr(offer.ClientHWAddr).String() == mac.String():
			r.Answered, r.Took = true, time.Since(start)
			r.Server, _ = netip.AddrFromSlice(offer.ServerIdentifier().To4())
			r.Offered, _ = netip.AddrFromSlice(offer.YourIPAddr.To4())
			return r, nil
		case ctx.Err() != nil:
			return r, ctx.Err()
		case err != nil && !errors.Is(err, nclient4.ErrNoResponse):
			return r, fmt.Errorf("dhcp probe on %s: %w", link, err)
		}
	}
	r.Took = time.Since(start)
	return r, nil
}

// open opens the probe's client on link, sending from mac.
func open(link string, mac net.HardwareAddr) (*nclient4.Client, error) {
	l, err := netlink.LinkByName(link)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, fmt.Errorf("dhcp probe on %s: %w", link, ErrNoLink)
		}
		return nil, fmt.Errorf("dhcp probe on %s: %w", link, err)
	}
	a := l.Attrs()
	// Raising is per thread: the socket is made on this one.
	runtime.LockOSThread()
	lower := caps.Raise(caps.NetRaw)
	conn, err := dhcpupstream.ListenL2(&net.Interface{Index: a.Index, Name: a.Name, HardwareAddr: mac, MTU: a.MTU})
	lower()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("dhcp probe on %s: packet socket: %w", link, err)
	}
	// One try per DiscoverOffer (Run repeats it with the same xid, at a
	// fixed interval: nclient4's own retries double theirs).
	nc, err := nclient4.NewWithConn(conn, mac, nclient4.WithTimeout(Interval), nclient4.WithRetry(1))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dhcp probe on %s: %w", link, err), conn.Close())
	}
	return nc, nil
}

// Prober is the verdict a probe reports to: dhcpverdict.Verifier.Probe.
type Prober func(parent context.Context, xid uint32) (ctx context.Context, refused func(why string, move func(string) bool), ok bool)

// Start runs the probe on link from mac in the background, for the
// verdict armed on it (probe: none when nothing is armed): an unanswered
// probe hands move to the verdict's refused (which runs it at the
// guest's first DISCOVER); an answer, an error or a probe cut short is a
// step line. stop ends the probe and waits for it.
func Start(parent context.Context, link string, mac net.HardwareAddr, probe Prober, move func(why string) bool, step func(string, ...any)) (stop func()) {
	if os.Getenv(EnvOff) == "off" {
		step("network: no DHCP probe (%s=off)", EnvOff)
		return func() {}
	}
	xid := NewXID()
	parent, cancel := context.WithCancel(parent)
	ctx, refused, ok := probe(parent, xid)
	if !ok {
		cancel()
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		step("network: probing the LAN's DHCP from the guest's MAC on %s (up to %d DISCOVERs, %s)", link, Tries, Tries*Interval)
		r, err := Run(ctx, link, mac, xid)
		switch {
		case errors.Is(err, context.Canceled):
			step("network: DHCP probe ended after %d DISCOVERs: the guest's own DHCP started (or the attachment changed)", r.Tries)
		case err != nil:
			step("network: %v; the guest's own DHCP decides", err)
		case r.Answered:
			step("network: DHCP probe answered in %.1f ms: %s offers %s to the guest's MAC (not leased)", float64(r.Took.Microseconds())/1000, r.Server, r.Offered)
		default:
			step("network: %s: the guest moves at its first DISCOVER, once its system runs", r.Why())
			refused(r.Why(), move)
		}
	}()
	return func() { cancel(); <-done }
}
