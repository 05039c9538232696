package fakeguest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"time"
)

// DHCP message types (option 53).
const (
	dhcpDiscover = 1
	dhcpOffer    = 2
	dhcpRequest  = 3
	dhcpAck      = 5
	dhcpNak      = 6
	dhcpRelease  = 7
)

// DHCP option codes used here.
const (
	optSubnetMask  = 1
	optRouter      = 3
	optRequestedIP = 50
	optLeaseTime   = 51
	optMsgType     = 53
	optServerID    = 54
	optParamReq    = 55
	optClientID    = 61
	optEnd         = 255
)

var dhcpCookie = []byte{99, 130, 83, 99}

// Lease is what a DHCP server granted.
type Lease struct {
	IP, Mask, Router, Server net.IP
	Duration                 time.Duration
	// Options are all options of the ACK, by code.
	Options map[byte][]byte
}

// dhcpMsg is a parsed BOOTP/DHCP reply.
type dhcpMsg struct {
	xid    uint32
	yiaddr net.IP
	opts   map[byte][]byte
}

// DHCP takes a lease (DISCOVER, OFFER, REQUEST, ACK) with the broadcast
// flag set, and gives the guest the address.
func (g *Guest) DHCP(ctx context.Context) (Lease, error) {
	var xb [4]byte
	_, _ = rand.Read(xb[:])
	xid := binary.BigEndian.Uint32(xb[:])
	offer, err := g.dhcpExchange(ctx, xid, dhcpOffer, g.dhcpPacket(xid, dhcpDiscover, nil, nil))
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP discover: %w", err)
	}
	server := net.IP(offer.opts[optServerID])
	ack, err := g.dhcpExchange(ctx, xid, dhcpAck, g.dhcpPacket(xid, dhcpRequest, offer.yiaddr, server))
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP request for %s: %w", offer.yiaddr, err)
	}
	l := Lease{IP: ack.yiaddr, Mask: ack.opts[optSubnetMask], Server: ack.opts[optServerID], Options: ack.opts}
	if r := ack.opts[optRouter]; len(r) >= 4 {
		l.Router = net.IP(r[:4])
	}
	if d := ack.opts[optLeaseTime]; len(d) == 4 {
		l.Duration = time.Duration(binary.BigEndian.Uint32(d)) * time.Second
	}
	g.SetIP(l.IP)
	return l, nil
}

// Release gives the lease back (DHCPRELEASE, unicast to the server from
// the leased address) and forgets the address. No answer comes.
func (g *Guest) Release(ctx context.Context, l Lease) error {
	serverMAC, err := g.Resolve(ctx, l.Server)
	if err != nil {
		return fmt.Errorf("DHCP release: %w", err)
	}
	var xb [4]byte
	_, _ = rand.Read(xb[:])
	p := g.dhcpPacket(binary.BigEndian.Uint32(xb[:]), dhcpRelease, nil, l.Server)
	copy(p[12:16], l.IP.To4()) // ciaddr
	p[10] = 0                  // no broadcast flag
	err = g.Send(ipv4Frame(serverMAC, g.mac, l.IP, l.Server, 17, udp(68, 67, p)))
	g.SetIP(nil)
	return err
}

// dhcpExchange broadcasts packet until a reply of type want (or a NAK) for xid arrives.
func (g *Guest) dhcpExchange(ctx context.Context, xid uint32, want byte, packet []byte) (dhcpMsg, error) {
	frame := func() []byte {
		return ipv4Frame(Broadcast, g.mac, net.IPv4zero, net.IPv4bcast, 17, udp(68, 67, packet))
	}
	match := func(f []byte) bool {
		m, ok := parseDHCP(f)
		return ok && m.xid == xid && len(m.opts[optMsgType]) == 1 &&
			(m.opts[optMsgType][0] == want || m.opts[optMsgType][0] == dhcpNak)
	}
	f, err := g.exchange(ctx, frame, match, time.Second)
	if err != nil {
		return dhcpMsg{}, err
	}
	m, _ := parseDHCP(f)
	if m.opts[optMsgType][0] == dhcpNak {
		return dhcpMsg{}, fmt.Errorf("server sent DHCPNAK")
	}
	return m, nil
}

// dhcpPacket builds a DISCOVER or REQUEST.
func (g *Guest) dhcpPacket(xid uint32, typ byte, requested, server net.IP) []byte {
	p := make([]byte, 236)
	p[0], p[1], p[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, MAC length
	binary.BigEndian.PutUint32(p[4:], xid)
	g.mu.Lock()
	cid, unicast, noID := g.clientID, g.unicast, g.noID
	g.mu.Unlock()
	if !unicast {
		binary.BigEndian.PutUint16(p[10:], 0x8000) // broadcast flag: we have no address yet
	}
	copy(p[28:34], g.mac)
	p = append(p, dhcpCookie...)
	p = append(p, optMsgType, 1, typ)
	if cid == nil {
		cid = append([]byte{1}, g.mac...)
	}
	if !noID {
		p = append(p, optClientID, byte(len(cid)))
		p = append(p, cid...)
	}
	p = append(p, optParamReq, 3, optSubnetMask, optRouter, optLeaseTime)
	if requested != nil {
		p = append(p, optRequestedIP, 4)
		p = append(p, requested.To4()...)
	}
	if server != nil {
		p = append(p, optServerID, 4)
		p = append(p, server.To4()...)
	}
	return append(p, optEnd)
}

// parseDHCP parses a DHCP reply to port 68 (the UDP checksum is not
// checked: a tap with offloads may deliver it unfinished).
func parseDHCP(f []byte) (dhcpMsg, bool) {
	ip, ok := parseIPv4(f)
	if !ok || ip.proto != 17 || len(ip.payload) < 8 || binary.BigEndian.Uint16(ip.payload[2:4]) != 68 {
		return dhcpMsg{}, false
	}
	b := ip.payload[8:]
	if len(b) < 240 || b[0] != 2 || !bytes.Equal(b[236:240], dhcpCookie) {
		return dhcpMsg{}, false
	}
	m := dhcpMsg{xid: binary.BigEndian.Uint32(b[4:8]), yiaddr: net.IP(append([]byte(nil), b[16:20]...)), opts: map[byte][]byte{}}
	for o := b[240:]; len(o) > 0; {
		code := o[0]
		if code == optEnd {
			break
		}
		if code == 0 {
			o = o[1:]
			continue
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			break
		}
		m.opts[code] = append([]byte(nil), o[2:2+int(o[1])]...)
		o = o[2+int(o[1]):]
	}
	return m, true
}
