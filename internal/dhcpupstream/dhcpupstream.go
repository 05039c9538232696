// Package dhcpupstream takes a lease from the LAN's DHCP server on a guest's
// behalf, through the host's uplink, and keeps it renewed.
//
// Routed mode (and ipvtap on Wi-Fi) gives the guest an address of the LAN
// while the guest shares the host's MAC, or sits behind it. The lease is
// therefore requested with the host's MAC as chaddr, a client identifier
// (option 61) of the guest's own so that the server tells the leases
// apart, and the broadcast flag, since the host does not own the address
// an OFFER or ACK would be unicast to. Messages go through an AF_PACKET
// socket on the uplink; insomniacslk/dhcp's nclient4 builds them and
// matches the answers.
package dhcpupstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// Config says where and as whom to ask for the lease.
type Config struct {
	Link     string        // the host's uplink, in the caller's network namespace
	ClientID []byte        // option 61, type byte first; see VMClientID
	Hostname string        // option 12, optional
	Timeout  time.Duration // for Acquire's exchange; default 30s
	Logf     func(format string, args ...any)
	// BroadcastRenew has Run renew and rebind as a rebooting client asks
	// (no ciaddr, the address in option 50, the broadcast flag), so that
	// the server's answer is broadcast, instead of with ciaddr, which the
	// server answers unicast to the leased address. For an address that
	// the host does not answer ARP for (ipvtap: the guest's, which only
	// the guest answers for, and only while it has it configured — not
	// while it boots, nor after it released it).
	BroadcastRenew bool
}

// Lease is a lease the LAN's server granted.
type Lease struct {
	IP        net.IP
	Mask      net.IPMask
	Router    net.IP // first router of option 3; nil when none
	DNS       []net.IP
	Domain    string
	ServerID  net.IP
	LeaseTime time.Duration
	T1, T2    time.Duration // renewal and rebinding times, from Acquired
	Acquired  time.Time     // when the request that was acknowledged was sent
}

// Expires returns when the lease ends unless it is renewed.
func (l Lease) Expires() time.Time { return l.Acquired.Add(l.LeaseTime) }

// Sentinel errors; match them with errors.Is.
var (
	// ErrLinkNotFound means Config.Link does not exist in the calling
	// thread's network namespace. It also matches os.ErrNotExist.
	ErrLinkNotFound error = notFoundError("link not found")
	// ErrInvalidConfig means a Config field is missing or malformed.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrNak means the server refused the lease (DHCPNAK).
	ErrNak = errors.New("server refused the lease (DHCPNAK)")
	// ErrNoLease means the client holds no lease (released, or lost).
	ErrNoLease = errors.New("no lease held")
)

// notFoundError is an error that matches os.ErrNotExist.
type notFoundError string

// Error returns the message.
func (e notFoundError) Error() string { return string(e) }

// Is reports whether target is os.ErrNotExist.
func (e notFoundError) Is(target error) bool { return target == os.ErrNotExist }

// VMClientID returns the client identifier vmrun uses for the VM called
// name: type 0 (not a hardware address) and "vmrun-" + name.
func VMClientID(name string) []byte { return append([]byte{0}, "vmrun-"+name...) }

// Timing of retransmissions.
const (
	defaultTimeout = 30 * time.Second
	firstRetry     = time.Second     // nclient4 doubles it after each unanswered try
	attemptTimeout = 8 * time.Second // one renewal or rebinding attempt (tries at 0, 1, 3, 7 s)
	minRetryWait   = 60 * time.Second
	lostRetryWait  = 10 * time.Second
)

// Client holds one lease on the uplink. Acquire makes it; Run keeps the
// lease; Release gives it back; Close drops the socket without releasing.
type Client struct {
	cfg Config
	nc  *nclient4.Client

	mu    sync.Mutex
	cur   *nclient4.Lease // nil when no lease is held
	lease Lease

	again bool          // Reacquire was called: Run drops the lease and acquires
	kick  chan struct{} // Reacquire wakes Run (buffered, one)

	closeOnce sync.Once
	closeErr  error
}

// Acquire opens a socket on cfg.Link (in the calling thread's network
// namespace) and obtains a lease with DISCOVER, OFFER, REQUEST, ACK.
func Acquire(ctx context.Context, cfg Config) (*Client, error) {
	c, err := open(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := c.acquire(ctx, nil); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// open checks cfg and opens the client's socket.
func open(cfg Config) (*Client, error) {
	switch {
	case cfg.Link == "":
		return nil, fmt.Errorf("dhcp lease on %q: %w: no link", cfg.Link, ErrInvalidConfig)
	case len(cfg.ClientID) < 2:
		return nil, fmt.Errorf("dhcp lease on %q: %w: client identifier must be a type byte and at least one more", cfg.Link, ErrInvalidConfig)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("dhcp lease on %q: %w: negative timeout", cfg.Link, ErrInvalidConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	cfg.ClientID = append([]byte(nil), cfg.ClientID...)
	link, err := netlink.LinkByName(cfg.Link)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, fmt.Errorf("dhcp lease on %q: %w", cfg.Link, ErrLinkNotFound)
		}
		return nil, fmt.Errorf("dhcp lease on %q: %w", cfg.Link, err)
	}
	a := link.Attrs()
	if len(a.HardwareAddr) != 6 {
		return nil, fmt.Errorf("dhcp lease on %q: %w: link has no Ethernet address", cfg.Link, ErrInvalidConfig)
	}
	conn, err := listenL2(&net.Interface{Index: a.Index, Name: a.Name, HardwareAddr: a.HardwareAddr, MTU: a.MTU})
	if err != nil {
		return nil, fmt.Errorf("dhcp lease on %q: open packet socket: %w", cfg.Link, err)
	}
	nc, err := nclient4.NewWithConn(conn, a.HardwareAddr,
		nclient4.WithTimeout(firstRetry), nclient4.WithRetry(-1), // until the context ends
		nclient4.WithLogger(logger{cfg.Logf}))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dhcp lease on %q: %w", cfg.Link, err), conn.Close())
	}
	return &Client{cfg: cfg, nc: nc, kick: make(chan struct{}, 1)}, nil
}

// logger passes nclient4's own messages (not the message dumps) to Logf.
type logger struct{ logf func(string, ...any) }

// PrintMessage drops the per-message dumps.
func (logger) PrintMessage(string, *dhcpv4.DHCPv4) {}

// Printf logs through Logf.
func (l logger) Printf(format string, args ...any) { l.logf("dhcp client: "+format, args...) }

// modifiers are the options every request carries: the client identifier,
// the host name and the parameters wanted.
func (c *Client) modifiers() []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(c.cfg.ClientID)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
			dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionIPAddressLeaseTime,
			dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue),
	}
	if c.cfg.Hostname != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptHostName(c.cfg.Hostname)))
	}
	return m
}

// acquire runs DISCOVER-OFFER-REQUEST-ACK, asking for hint (may be nil)
// in the DISCOVER, and installs the lease.
func (c *Client) acquire(ctx context.Context, hint net.IP) (Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	mods := append(c.modifiers(), dhcpv4.WithBroadcast(true))
	discover := mods
	if hint != nil {
		discover = append(discover[:len(discover):len(discover)], dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(hint)))
	}
	offer, err := c.nc.DiscoverOffer(ctx, discover...)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp lease on %q: no offer: %w", c.cfg.Link, err)
	}
	sent := time.Now()
	nl, err := c.nc.RequestFromOffer(ctx, offer, mods...)
	if err != nil {
		return Lease{}, c.requestError("request", offer.YourIPAddr, err)
	}
	l := c.install(nl, sent)
	c.cfg.Logf("dhcp lease on %q: got %s/%d from %s for %s", c.cfg.Link, l.IP, ones(l.Mask), l.ServerID, l.LeaseTime)
	return l, nil
}

// requestError wraps a failed REQUEST, mapping a NAK to ErrNak.
func (c *Client) requestError(what string, ip net.IP, err error) error {
	var nak *nclient4.ErrNak
	if errors.As(err, &nak) {
		return fmt.Errorf("dhcp lease on %q: %s for %s: %w: %q", c.cfg.Link, what, ip, ErrNak, nak.Nak.Message())
	}
	return fmt.Errorf("dhcp lease on %q: %s for %s: %w", c.cfg.Link, what, ip, err)
}

// install makes the ACK in nl the current lease; sent is when the request
// it answers was sent, the lease's start.
func (c *Client) install(nl *nclient4.Lease, sent time.Time) Lease {
	l := leaseFromACK(nl.ACK, nl.Offer, sent)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.lease = nl, l
	return l
}

// leaseFromACK reads a Lease out of an ACK (server identifier from the
// offer if the ACK lacks it), with RFC 2131's default T1 and T2.
func leaseFromACK(ack, offer *dhcpv4.DHCPv4, sent time.Time) Lease {
	l := Lease{
		IP:        ack.YourIPAddr.To4(),
		Mask:      ack.SubnetMask(),
		DNS:       ack.DNS(),
		Domain:    ack.DomainName(),
		ServerID:  ack.ServerIdentifier(),
		LeaseTime: ack.IPAddressLeaseTime(0),
		Acquired:  sent,
	}
	if l.Mask == nil {
		l.Mask = l.IP.DefaultMask()
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router = r[0]
	}
	if l.ServerID == nil && offer != nil {
		l.ServerID = offer.ServerIdentifier()
	}
	l.T1 = ack.IPAddressRenewalTime(l.LeaseTime / 2)
	l.T2 = ack.IPAddressRebindingTime(l.LeaseTime * 7 / 8)
	if l.T2 <= 0 || l.T2 > l.LeaseTime {
		l.T2 = l.LeaseTime * 7 / 8
	}
	if l.T1 <= 0 || l.T1 > l.T2 {
		l.T1 = l.LeaseTime / 2
	}
	return l
}

// ones returns the prefix length of m.
func ones(m net.IPMask) int { n, _ := m.Size(); return n }

// Lease returns the lease currently held (the zero Lease when none is).
func (c *Client) Lease() Lease {
	if l, held := c.snapshot(); held {
		return l
	}
	return Lease{}
}

// snapshot returns the last lease (also once dropped, for its address)
// and whether it is still held.
func (c *Client) snapshot() (Lease, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease, c.cur != nil
}

// current returns the nclient4 lease held, or ErrNoLease.
func (c *Client) current() (*nclient4.Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil, fmt.Errorf("dhcp lease on %q: %w", c.cfg.Link, ErrNoLease)
	}
	return c.cur, nil
}

// Renew extends the lease in the RENEWING state: a REQUEST with ciaddr,
// unicast to the server that granted it. The server answers to the
// leased address, so the LAN must deliver that address to this host's
// link (routed mode: proxy ARP on the uplink; ipvtap: the guest's own
// ipvlan slave) — otherwise use Rebind after T2, or let Run re-acquire.
func (c *Client) Renew(ctx context.Context) (Lease, error) {
	cur, err := c.current()
	if err != nil {
		return Lease{}, err
	}
	return c.extend(ctx, cur, "renew", &net.UDPAddr{IP: cur.ACK.ServerIdentifier(), Port: nclient4.ServerPort},
		nclient4.IsCorrectServer(cur.ACK.ServerIdentifier()))
}

// Rebind extends the lease in the REBINDING state: a REQUEST with ciaddr,
// broadcast, which any server may answer (still at the leased address).
func (c *Client) Rebind(ctx context.Context) (Lease, error) {
	cur, err := c.current()
	if err != nil {
		return Lease{}, err
	}
	return c.extend(ctx, cur, "rebind", nclient4.DefaultServers, func(*dhcpv4.DHCPv4) bool { return true })
}

// extend sends a RENEWING or REBINDING request for cur to dst.
func (c *Client) extend(ctx context.Context, cur *nclient4.Lease, what string, dst *net.UDPAddr, from nclient4.Matcher) (Lease, error) {
	if dst.IP == nil {
		dst = nclient4.DefaultServers
	}
	xid, err := dhcpv4.GenerateTransactionID()
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp lease on %q: %s: %w", c.cfg.Link, what, err)
	}
	// NewRenewFromAck sets ciaddr and would reuse the ACK's transaction ID.
	req, err := dhcpv4.NewRenewFromAck(cur.ACK, append(c.modifiers(), dhcpv4.WithTransactionID(xid))...)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp lease on %q: %s: %w", c.cfg.Link, what, err)
	}
	sent := time.Now()
	resp, err := c.nc.SendAndRead(ctx, dst, req, nclient4.IsAll(from,
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err == nil && resp.MessageType() == dhcpv4.MessageTypeNak {
		err = &nclient4.ErrNak{Offer: cur.Offer, Nak: resp}
	}
	if err != nil {
		return Lease{}, c.requestError(what, cur.ACK.YourIPAddr, err)
	}
	l := c.install(&nclient4.Lease{Offer: cur.Offer, ACK: resp, CreationTime: sent}, sent)
	c.cfg.Logf("dhcp lease on %q: %s of %s: %s more", c.cfg.Link, what, l.IP, l.LeaseTime)
	return l, nil
}

// reboot asks for the lease as a rebooting client does (INIT-REBOOT: no
// ciaddr, the address in option 50, the broadcast flag), so that the
// answer is broadcast. Run falls back to it when a rebinding request got
// no answer, which happens when the LAN does not deliver the leased
// address to this host; with Config.BroadcastRenew it renews and rebinds
// this way.
func (c *Client) reboot(ctx context.Context) (Lease, error) {
	cur, err := c.current()
	if err != nil {
		return Lease{}, err
	}
	ip := cur.ACK.YourIPAddr
	req, err := dhcpv4.New(append(c.modifiers(), dhcpv4.WithHwAddr(c.nc.InterfaceAddr()),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))...)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp lease on %q: init-reboot: %w", c.cfg.Link, err)
	}
	sent := time.Now()
	resp, err := c.nc.SendAndRead(ctx, nclient4.DefaultServers, req,
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err == nil && resp.MessageType() == dhcpv4.MessageTypeNak {
		err = &nclient4.ErrNak{Offer: cur.Offer, Nak: resp}
	}
	if err != nil {
		return Lease{}, c.requestError("init-reboot", ip, err)
	}
	l := c.install(&nclient4.Lease{Offer: cur.Offer, ACK: resp, CreationTime: sent}, sent)
	c.cfg.Logf("dhcp lease on %q: init-reboot request kept %s: %s more", c.cfg.Link, l.IP, l.LeaseTime)
	return l, nil
}

// Reacquire has Run take a new lease at once, as a client that may have
// moved to another network does: the lease held is forgotten (not
// released: its server may be out of reach) and Run, woken from its wait
// or after the step it is in, acquires one with DISCOVER, asking for the
// old address, which the server of another network ignores. Run's
// onChange then reports the new lease (the same address when the server
// gives it again). It returns at once; a Run that is not running
// acquires when it starts.
func (c *Client) Reacquire() {
	c.mu.Lock()
	c.again = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// drop forgets the lease held (after a NAK or its expiry).
func (c *Client) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = nil
}

// dropIfAsked drops the lease when Reacquire asked for a new one since
// the last call (also when the lease was taken after the call: it may be
// the old network's).
func (c *Client) dropIfAsked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.again {
		c.again, c.cur = false, nil
	}
}

// Run keeps the lease until ctx is done, then returns nil (it does not
// release the lease: call Release for that). At T1 it renews, at T2 it
// rebinds (and if that gets no answer, asks as a rebooting client, whose
// answer is broadcast; with Config.BroadcastRenew it asks so at T1 and T2
// straight away), and once the lease has expired or been refused it
// acquires a new one, asking for the same address. onChange (optional)
// is called with the lease after every successful renewal, rebinding or
// new acquisition; the address may differ after a new acquisition.
// Reacquire wakes it to acquire at once. Run must not be called twice at
// once.
func (c *Client) Run(ctx context.Context, onChange func(Lease)) error {
	var notBefore time.Time // after a failed attempt: when to try again
	for {
		c.dropIfAsked()
		l, held := c.snapshot()
		now := time.Now()
		st := stateAt(l, held, now)
		wake := notBefore
		if st == stateBound {
			wake = l.Acquired.Add(l.T1)
		}
		if wait := wake.Sub(now); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			case <-c.kick: // Reacquire: drop the lease and acquire now
				t.Stop()
				notBefore = time.Time{}
			}
			continue // the lease may have changed meanwhile (a Renew call)
		}
		next, err := c.step(ctx, st, l)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.cfg.Logf("%v", err)
			notBefore = retryAt(l, st, time.Now())
			if errors.Is(err, ErrNak) {
				c.drop()
				notBefore = time.Time{} // acquire a new lease at once
			}
			continue
		}
		notBefore = time.Time{}
		if onChange != nil {
			onChange(next)
		}
	}
}

// step performs the action of state st for lease l.
func (c *Client) step(ctx context.Context, st state, l Lease) (Lease, error) {
	switch st {
	case stateRenewing:
		actx, cancel := context.WithDeadline(ctx, earliest(time.Now().Add(attemptTimeout), l.Acquired.Add(l.T2)))
		defer cancel()
		if c.cfg.BroadcastRenew {
			return c.reboot(actx)
		}
		return c.Renew(actx)
	case stateRebinding:
		actx, cancel := context.WithDeadline(ctx, earliest(time.Now().Add(attemptTimeout), l.Expires()))
		defer cancel()
		if c.cfg.BroadcastRenew {
			return c.reboot(actx)
		}
		next, err := c.Rebind(actx)
		if err == nil || errors.Is(err, ErrNak) || ctx.Err() != nil {
			return next, err
		}
		c.cfg.Logf("%v; asking as a rebooting client", err)
		rctx, cancel := context.WithDeadline(ctx, earliest(time.Now().Add(attemptTimeout), l.Expires()))
		defer cancel()
		return c.reboot(rctx)
	case stateLost:
		c.drop()
		return c.acquire(ctx, l.IP)
	default:
		return l, fmt.Errorf("dhcp lease on %q: nothing to do while bound", c.cfg.Link) // unreachable: wakeAt waits for T1
	}
}

// earliest returns the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// state is where a lease stands in RFC 2131's client state machine.
type state int

// The states Run acts in.
const (
	stateBound     state = iota // before T1
	stateRenewing               // T1 to T2
	stateRebinding              // T2 to expiry
	stateLost                   // expired, refused or never held
)

// stateAt returns the state of lease l at now; held is false once the
// lease was dropped.
func stateAt(l Lease, held bool, now time.Time) state {
	switch {
	case !held || !now.Before(l.Expires()):
		return stateLost
	case now.Before(l.Acquired.Add(l.T1)):
		return stateBound
	case now.Before(l.Acquired.Add(l.T2)):
		return stateRenewing
	default:
		return stateRebinding
	}
}

// retryAt returns when Run tries again after an attempt in state st
// failed at now: after half the time left to T2 (renewing) or to expiry
// (rebinding), at least a minute but not past that point (RFC 2131
// section 4.4.5); a lost lease is sought again every 10 seconds.
func retryAt(l Lease, st state, now time.Time) time.Time {
	retry := func(end time.Time) time.Time {
		return earliest(now.Add(max(end.Sub(now)/2, minRetryWait)), end)
	}
	switch st {
	case stateRenewing:
		return retry(l.Acquired.Add(l.T2))
	case stateRebinding:
		return retry(l.Expires())
	default:
		return now.Add(lostRetryWait)
	}
}

// Release gives the lease back (DHCPRELEASE, unicast to the server) and
// closes the client. Call it after Run has returned.
func (c *Client) Release() error {
	c.mu.Lock()
	cur := c.cur
	c.cur = nil
	c.mu.Unlock()
	var err error
	if cur != nil {
		if err = c.nc.Release(cur, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(c.cfg.ClientID))); err != nil {
			err = fmt.Errorf("dhcp lease on %q: release %s: %w", c.cfg.Link, cur.ACK.YourIPAddr, err)
		} else {
			c.cfg.Logf("dhcp lease on %q: released %s", c.cfg.Link, cur.ACK.YourIPAddr)
		}
	}
	return errors.Join(err, c.Close())
}

// Close closes the client's socket without releasing the lease. It is safe
// to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if err := c.nc.Close(); err != nil {
			c.closeErr = fmt.Errorf("dhcp lease on %q: close: %w", c.cfg.Link, err)
		}
	})
	return c.closeErr
}
