package dhcpupstream

import (
	"github.com/vmrun/vmrun/internal/udpframe"
	"net"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// DHCP's UDP ports.
const (
	serverPort = 67
	clientPort = 68
)

// l2Conn is the net.PacketConn that nclient4 reads and writes DHCP
// payloads through: a raw packet socket on the uplink, framing UDP/IPv4 in
// Ethernet itself.
//
// It differs from nclient4's own raw connection in three ways the guest's
// lease needs:
//   - It listens with ETH_P_ALL, so it sees a reply unicast to the guest's
//     address even where an rx handler on the uplink (ipvlan, for an ipvtap
//     guest) steers that frame away from the host before protocol-specific
//     sockets would see it.
//   - The source address of each message is its ciaddr: 0.0.0.0 while
//     selecting, the leased address when renewing, rebinding and releasing
//     (a Linux server drops unicast from 0.0.0.0 as a martian).
//   - Unicast goes to the server's MAC, learnt from its replies, instead of
//     the broadcast MAC.
type l2Conn struct {
	conn *packet.Conn
	mac  net.HardwareAddr

	mu    sync.Mutex
	peers map[[4]byte]net.HardwareAddr // server IPv4 → MAC, from replies
}

// ListenL2 opens the connection nclient4 speaks DHCP through (see l2Conn)
// on ifi, in the calling thread's network namespace: frames go out with
// ifi.HardwareAddr as their source, which need not be the link's own MAC
// (internal/dhcpprobe sends from the guest's).
func ListenL2(ifi *net.Interface) (net.PacketConn, error) { return listenL2(ifi) }

// listenL2 opens the socket on ifi (in the calling thread's namespace).
func listenL2(ifi *net.Interface) (*l2Conn, error) {
	filter, err := udpframe.PortFilter(clientPort)
	if err != nil {
		return nil, err
	}
	conn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: filter})
	if err != nil {
		return nil, err
	}
	return &l2Conn{conn: conn, mac: ifi.HardwareAddr, peers: map[[4]byte]net.HardwareAddr{}}, nil
}

// ReadFrom returns the payload of the next UDP datagram to port 68.
func (c *l2Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	buf := make([]byte, 1<<16)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return 0, nil, err
		}
		d, err := udpframe.Parse(buf[:n])
		if err != nil || d.DstPort != clientPort {
			continue
		}
		if src := d.Src.To4(); d.SrcPort == serverPort && !src.IsUnspecified() {
			c.mu.Lock()
			c.peers[[4]byte(src)] = d.SrcMAC
			c.mu.Unlock()
		}
		return copy(b, d.Payload), &net.UDPAddr{IP: d.Src, Port: d.SrcPort}, nil
	}
}

// WriteTo sends the DHCP message b to addr (a *net.UDPAddr).
func (c *l2Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua.IP.To4() == nil {
		return 0, &net.OpError{Op: "write", Net: "dhcp", Addr: addr, Err: net.InvalidAddrError("not a udp4 address")}
	}
	src := net.IPv4zero
	if len(b) >= 16 { // ciaddr is at offset 12 of a BOOTP message
		src = net.IP(append([]byte(nil), b[12:16]...))
	}
	dstMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if !ua.IP.Equal(net.IPv4bcast) {
		c.mu.Lock()
		if m, ok := c.peers[[4]byte(ua.IP.To4())]; ok {
			dstMAC = m
		}
		c.mu.Unlock()
	}
	frame, err := (&udpframe.Datagram{
		SrcMAC: c.mac, DstMAC: dstMAC, Src: src, Dst: ua.IP,
		SrcPort: clientPort, DstPort: ua.Port, Payload: b,
	}).Marshal()
	if err != nil {
		return 0, err
	}
	if _, err := c.conn.WriteTo(frame, &packet.Addr{HardwareAddr: dstMAC}); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close closes the socket.
func (c *l2Conn) Close() error { return c.conn.Close() }

// LocalAddr returns the socket's link-layer address.
func (c *l2Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// SetDeadline sets the socket's read and write deadlines.
func (c *l2Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *l2Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *l2Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
