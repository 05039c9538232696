package fakeguest

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/ethernet"
	xipv4 "golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// peer is the other end of a socketpair standing in for a tap fd.
type peer struct {
	t *testing.T
	f *os.File
}

func pair(t *testing.T) (*os.File, *peer) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "guest"), os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, &peer{t: t, f: b}
}

// read returns the next frame from the guest (without the vnet header).
func (p *peer) read() []byte {
	p.t.Helper()
	buf := make([]byte, 2048)
	_ = p.f.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.f.Read(buf)
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	if n < VnetHdrLen {
		p.t.Fatalf("short frame %d", n)
	}
	return buf[VnetHdrLen:n]
}

func (p *peer) write(frame []byte) {
	p.t.Helper()
	if _, err := p.f.Write(append(make([]byte, VnetHdrLen), frame...)); err != nil {
		p.t.Fatal(err)
	}
}

var (
	guestMAC = net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	peerMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 9}
	guestIP  = net.IPv4(10, 9, 0, 5).To4()
	peerIP   = net.IPv4(10, 9, 0, 1).To4()
)

func TestAnswersARPAndEcho(t *testing.T) {
	f, p := pair(t)
	g := New(f, guestMAC, true)
	defer g.Close()
	g.SetIP(guestIP)

	p.write(arpFrame(1, peerMAC, peerIP, Broadcast, guestIP))
	a, ok := parseARP(p.read())
	if !ok || a.op != 2 || !a.spa.Equal(guestIP) || a.sha.String() != guestMAC.String() || a.tha.String() != peerMAC.String() {
		t.Fatalf("ARP reply %+v", a)
	}

	p.write(ipv4Frame(guestMAC, peerMAC, peerIP, guestIP, 1, icmpEcho(8, 7, 1, []byte("hi"))))
	r := p.read()
	ip, ok := parseIPv4(r)
	if !ok || ip.proto != 1 || ip.payload[0] != 0 || !ip.src.Equal(guestIP) || !ip.dst.Equal(peerIP) {
		t.Fatalf("echo reply %x", r)
	}
	if Checksum(ip.payload) != 0 || Checksum(r[14:34]) != 0 {
		t.Error("bad checksums in the echo reply")
	}
	if g.ARPReplies.Load() != 1 || g.EchoReplies.Load() != 1 {
		t.Errorf("counters %d %d", g.ARPReplies.Load(), g.EchoReplies.Load())
	}
}

func TestPing(t *testing.T) {
	f, p := pair(t)
	g := New(f, guestMAC, true)
	defer g.Close()
	g.SetIP(guestIP)
	done := make(chan error, 1)
	go func() { done <- g.Ping(context.Background(), peerIP) }()
	a, ok := parseARP(p.read())
	if !ok || a.op != 1 || !a.tpa.Equal(peerIP) {
		t.Fatalf("ARP request %+v", a)
	}
	p.write(arpFrame(2, peerMAC, peerIP, guestMAC, guestIP))
	var req ipv4
	for { // skip repeated ARP requests
		if req, ok = parseIPv4(p.read()); ok {
			break
		}
	}
	if req.proto != 1 || req.payload[0] != 8 {
		t.Fatalf("echo request %+v", req)
	}
	reply := append([]byte(nil), req.payload...)
	reply[0], reply[2], reply[3] = 0, 0, 0
	binary.BigEndian.PutUint16(reply[2:], Checksum(reply))
	p.write(ipv4Frame(guestMAC, peerMAC, peerIP, guestIP, 1, reply))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDHCP runs the client against a two-message fake server.
func TestDHCP(t *testing.T) {
	f, p := pair(t)
	g := New(f, guestMAC, true)
	defer g.Close()
	type res struct {
		l   Lease
		err error
	}
	done := make(chan res, 1)
	go func() { l, err := g.DHCP(context.Background()); done <- res{l, err} }()

	answer := func(want byte, typ byte) {
		t.Helper()
		req := parseBootRequest(t, p.read())
		if req.MessageType() != dhcpv4.MessageType(want) {
			t.Fatalf("want DHCP message %d, got %s", want, req.Summary())
		}
		if req.OpCode != dhcpv4.OpcodeBootRequest || !bytes.Equal(req.ClientHWAddr, guestMAC) || !req.IsBroadcast() {
			t.Errorf("not a broadcast request from the guest's MAC: %s", req.Summary())
		}
		if want == dhcpRequest && (!req.RequestedIPAddress().Equal(guestIP) || !req.ServerIdentifier().Equal(peerIP)) {
			t.Errorf("REQUEST for %v from server %v", req.RequestedIPAddress(), req.ServerIdentifier())
		}
		reply := bootReply(binary.BigEndian.Uint32(req.TransactionID[:]), typ)
		if m, err := dhcpv4.FromBytes(reply); err != nil || m.MessageType() != dhcpv4.MessageType(typ) || m.TransactionID != req.TransactionID {
			t.Fatalf("the test's own reply does not parse as DHCP type %d: %v %v", typ, m, err)
		}
		p.write(ipv4Frame(Broadcast, peerMAC, peerIP, net.IPv4bcast, 17, udp(67, 68, reply)))
	}
	answer(dhcpDiscover, dhcpOffer)
	answer(dhcpRequest, dhcpAck)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.l.IP.Equal(guestIP) || !r.l.Router.Equal(peerIP) || r.l.Duration != time.Hour || !g.IP().Equal(guestIP) {
		t.Errorf("lease %+v", r.l)
	}
}

// parseBootRequest parses the fake guest's DHCP message to the server
// (UDP 68 to 67) with libraries, not with the fake guest's own parser:
// Ethernet (mdlayher/ethernet), IPv4 header (x/net/ipv4), DHCP
// (insomniacslk/dhcp).
func parseBootRequest(t *testing.T, frame []byte) *dhcpv4.DHCPv4 {
	t.Helper()
	var eth ethernet.Frame
	if err := eth.UnmarshalBinary(frame); err != nil || eth.EtherType != ethernet.EtherTypeIPv4 {
		t.Fatalf("not an IPv4 frame (%v): % x", err, frame)
	}
	h, err := xipv4.ParseHeader(eth.Payload)
	if err != nil || h.Protocol != 17 || h.TotalLen > len(eth.Payload) || h.Len+8 > h.TotalLen {
		t.Fatalf("not a UDP packet (%v): %+v", err, h)
	}
	u := eth.Payload[h.Len:h.TotalLen]
	if src, dst := binary.BigEndian.Uint16(u[0:2]), binary.BigEndian.Uint16(u[2:4]); src != 68 || dst != 67 || int(binary.BigEndian.Uint16(u[4:6])) != len(u) {
		t.Fatalf("UDP %d -> %d, length %d of %d", src, dst, binary.BigEndian.Uint16(u[4:6]), len(u))
	}
	m, err := dhcpv4.FromBytes(u[8:])
	if err != nil {
		t.Fatalf("DHCP: %v", err)
	}
	return m
}

func bootReply(xid uint32, typ byte) []byte {
	b := make([]byte, 236)
	b[0], b[1], b[2] = 2, 1, 6
	binary.BigEndian.PutUint32(b[4:], xid)
	copy(b[16:20], guestIP)
	copy(b[28:34], guestMAC)
	b = append(b, dhcpCookie...)
	b = append(b, optMsgType, 1, typ, optServerID, 4)
	b = append(b, peerIP...)
	b = append(b, optSubnetMask, 4, 255, 255, 255, 0, optRouter, 4)
	b = append(b, peerIP...)
	b = append(b, optLeaseTime, 4, 0, 0, 0x0e, 0x10, 0, optEnd) // a pad byte before the end
	return b
}

func TestChecksum(t *testing.T) {
	// RFC 1071's example: 0x0001 f203 f4f5 f6f7 sums to 0xddf2; its complement is 0x220d.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Errorf("checksum %#x", got)
	}
}
