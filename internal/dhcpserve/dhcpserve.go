// Package dhcpserve answers the DHCPv4 requests of one guest on one link
// (the VM's tap) at layer 2.
//
// It binds no UDP port: every vmrun process runs its own responder, and they
// would collide on port 67. Instead it opens an AF_PACKET socket on the
// guest's own link, with a BPF filter that passes only incoming UDP/IPv4
// frames to port 67, and writes its answers as Ethernet frames on the same
// socket. On a tap, the frames the guest sends are received on the tap
// netdev, and a frame sent on the tap goes to the guest; this also works
// when the tap is a bridge port (the socket sees frames before the bridge
// takes them).
package dhcpserve

import (
	"context"
	"errors"
	"fmt"
	"github.com/vmrun/vmrun/internal/udpframe"
	"net"
	"os"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DHCP's UDP ports.
const (
	serverPort = 67
	clientPort = 68
)

// Route is a classless static route (DHCP option 121, RFC 3442) for the
// guest.
type Route struct {
	Dest   *net.IPNet // destination network
	Router net.IP     // next hop; 0.0.0.0 means the destination is on the link
}

// Lease is the configuration handed to the guest.
type Lease struct {
	IP        net.IP        // the guest's address
	Mask      net.IPMask    // its netmask, e.g. /32 in routed mode
	Router    net.IP        // option 3; may be off-link (169.254.0.1 in routed mode)
	DNS       []net.IP      // option 6
	Routes    []Route       // option 121; sent together with option 3
	LeaseTime time.Duration // option 51, default 1h; T1 and T2 are 1/2 and 7/8 of it
	ServerID  net.IP        // option 54 and the source address of replies; defaults to Router
	Domain    string        // option 15
	MTU       int           // option 26 when positive
}

// Config says which guest to answer, on which link, with what.
type Config struct {
	Link      string           // the guest's link (its tap), in the caller's network namespace
	ClientMAC net.HardwareAddr // the guest's MAC: requests with another chaddr get no answer
	ServerMAC net.HardwareAddr // source MAC of replies; defaults to the link's MAC
	Lease     Lease
	Logf      func(format string, args ...any) // optional
	OnAck     func(ip net.IP)                  // optional; called after each ACK that binds the lease
}

// defaultLeaseTime is used when Lease.LeaseTime is zero.
const defaultLeaseTime = time.Hour

// Sentinel errors of New and Serve; match them with errors.Is.
var (
	// ErrLinkNotFound means Config.Link does not exist in the calling
	// thread's network namespace. It also matches os.ErrNotExist.
	ErrLinkNotFound error = notFoundError("link not found")
	// ErrInvalidConfig means a Config field is missing or malformed.
	ErrInvalidConfig = errors.New("invalid configuration")
)

// notFoundError is an error that matches os.ErrNotExist.
type notFoundError string

// Error returns the message.
func (e notFoundError) Error() string { return string(e) }

// Is reports whether target is os.ErrNotExist.
func (e notFoundError) Is(target error) bool { return target == os.ErrNotExist }

// Server is a DHCP responder bound to one link. Create it with New, run it
// with Serve, and Close it.
type Server struct {
	cfg      Config // validated, defaults applied
	srcMAC   net.HardwareAddr
	conn     *packet.Conn
	once     sync.Once
	closeErr error
}

// New opens the responder's socket on cfg.Link (in the calling thread's
// network namespace) and checks the configuration. It serves nothing
// until Serve is called.
func New(cfg Config) (*Server, error) {
	if err := normalize(&cfg); err != nil {
		return nil, fmt.Errorf("dhcp responder on %q: %w", cfg.Link, err)
	}
	link, err := netlink.LinkByName(cfg.Link)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, fmt.Errorf("dhcp responder on %q: %w", cfg.Link, ErrLinkNotFound)
		}
		return nil, fmt.Errorf("dhcp responder on %q: %w", cfg.Link, err)
	}
	attrs := link.Attrs()
	src := cfg.ServerMAC
	if src == nil {
		src = attrs.HardwareAddr
	}
	if len(src) != 6 {
		return nil, fmt.Errorf("dhcp responder on %q: %w: link has no Ethernet address (set ServerMAC)", cfg.Link, ErrInvalidConfig)
	}
	filter, err := udpframe.PortFilter(serverPort)
	if err != nil {
		return nil, fmt.Errorf("dhcp responder on %q: assemble bpf filter: %w", cfg.Link, err)
	}
	ifi := &net.Interface{Index: attrs.Index, Name: attrs.Name, HardwareAddr: attrs.HardwareAddr, MTU: attrs.MTU}
	// ETH_P_ALL, not ETH_P_IP: on a bridge port the bridge's rx handler
	// consumes frames before protocol-specific sockets see them.
	conn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("dhcp responder on %q: open packet socket: %w", cfg.Link, err)
	}
	return &Server{cfg: cfg, srcMAC: src, conn: conn}, nil
}

// Check checks cfg and fills in its defaults, as New does, for Respond.
func Check(cfg *Config) error { return normalize(cfg) }

// normalize checks cfg and fills in defaults.
func normalize(cfg *Config) error {
	l := &cfg.Lease
	switch {
	case cfg.Link == "":
		return fmt.Errorf("%w: no link", ErrInvalidConfig)
	case len(cfg.ClientMAC) != 6:
		return fmt.Errorf("%w: guest MAC %q is not an Ethernet address", ErrInvalidConfig, cfg.ClientMAC)
	case cfg.ServerMAC != nil && len(cfg.ServerMAC) != 6:
		return fmt.Errorf("%w: server MAC %q is not an Ethernet address", ErrInvalidConfig, cfg.ServerMAC)
	case l.IP.To4() == nil:
		return fmt.Errorf("%w: lease address %v is not IPv4", ErrInvalidConfig, l.IP)
	case len(l.Mask) != net.IPv4len:
		return fmt.Errorf("%w: lease mask %v is not an IPv4 mask", ErrInvalidConfig, l.Mask)
	case l.LeaseTime < 0:
		return fmt.Errorf("%w: negative lease time %s", ErrInvalidConfig, l.LeaseTime)
	}
	if _, bits := l.Mask.Size(); bits == 0 {
		return fmt.Errorf("%w: lease mask %v is not contiguous", ErrInvalidConfig, l.Mask)
	}
	if l.ServerID == nil {
		l.ServerID = l.Router
	}
	if l.ServerID.To4() == nil {
		return fmt.Errorf("%w: no IPv4 server identifier (set ServerID or Router)", ErrInvalidConfig)
	}
	if l.Router != nil && l.Router.To4() == nil {
		return fmt.Errorf("%w: router %v is not IPv4", ErrInvalidConfig, l.Router)
	}
	for _, r := range l.Routes {
		if r.Dest == nil || r.Dest.IP.To4() == nil || len(r.Dest.Mask) != net.IPv4len || r.Router.To4() == nil {
			return fmt.Errorf("%w: route %v via %v is not IPv4", ErrInvalidConfig, r.Dest, r.Router)
		}
	}
	for _, d := range l.DNS {
		if d.To4() == nil {
			return fmt.Errorf("%w: DNS server %v is not IPv4", ErrInvalidConfig, d)
		}
	}
	if l.MTU < 0 || l.MTU > 0xffff || (l.MTU > 0 && l.MTU < 68) {
		return fmt.Errorf("%w: MTU %d out of range", ErrInvalidConfig, l.MTU)
	}
	if l.LeaseTime == 0 {
		l.LeaseTime = defaultLeaseTime
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return nil
}

// Serve answers the guest until ctx is done, then returns nil. It returns
// an error only when the socket fails for good.
func (s *Server) Serve(ctx context.Context) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			// Wakes the blocked ReadFrom below.
			_ = s.conn.SetReadDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	buf := make([]byte, 1<<16)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, unix.ENETDOWN) {
				// Reported once when the link goes down (or away); a
				// tap comes back when QEMU reopens it.
				s.cfg.Logf("dhcp responder on %q: link is down", s.cfg.Link)
				continue
			}
			return fmt.Errorf("dhcp responder on %q: read: %w", s.cfg.Link, err)
		}
		s.handle(buf[:n])
	}
}

// handle answers one received frame.
func (s *Server) handle(frame []byte) {
	d, err := udpframe.Parse(frame)
	if err != nil || d.DstPort != serverPort {
		return
	}
	req, err := dhcpv4.FromBytes(d.Payload)
	if err != nil {
		s.cfg.Logf("dhcp responder on %q: malformed DHCP message from %s: %v", s.cfg.Link, d.SrcMAC, err)
		return
	}
	r, err := respond(&s.cfg, req)
	if err != nil {
		s.cfg.Logf("dhcp responder on %q: %v", s.cfg.Link, err)
		return
	}
	if r.Msg == nil {
		s.cfg.Logf("dhcp responder on %q: no answer: %s", s.cfg.Link, r.Note)
		return
	}
	out := &udpframe.Datagram{
		SrcMAC: s.srcMAC, DstMAC: r.DstMAC,
		Src: s.cfg.Lease.ServerID, Dst: r.DstIP,
		SrcPort: serverPort, DstPort: clientPort,
		Payload: r.Msg.ToBytes(),
	}
	b, err := out.Marshal()
	if err == nil {
		_, err = s.conn.WriteTo(b, &packet.Addr{HardwareAddr: r.DstMAC})
	}
	if err != nil {
		s.cfg.Logf("dhcp responder on %q: send %s to %s: %v", s.cfg.Link, r.Msg.MessageType(), r.DstIP, err)
		return
	}
	s.cfg.Logf("dhcp responder on %q: %s (%s) -> %s %s to %s/%s", s.cfg.Link, req.MessageType(), r.Note,
		r.Msg.MessageType(), r.Msg.YourIPAddr, r.DstMAC, r.DstIP)
	if r.Msg.MessageType() == dhcpv4.MessageTypeAck && req.MessageType() == dhcpv4.MessageTypeRequest && s.cfg.OnAck != nil {
		s.cfg.OnAck(r.Msg.YourIPAddr)
	}
}

// Close closes the responder's socket. It is safe to call more than once;
// call it after Serve has returned.
func (s *Server) Close() error {
	s.once.Do(func() {
		if err := s.conn.Close(); err != nil {
			s.closeErr = fmt.Errorf("dhcp responder on %q: close: %w", s.cfg.Link, err)
		}
	})
	return s.closeErr
}

// Serve opens a responder on cfg.Link and answers the guest until ctx is
// done. Start-up errors (link missing, bad configuration) are returned at
// once; it returns nil when ctx ends.
func Serve(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	serveErr := s.Serve(ctx)
	return errors.Join(serveErr, s.Close())
}
