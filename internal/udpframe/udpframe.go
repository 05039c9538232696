// Package udpframe builds and parses UDP/IPv4 datagrams in Ethernet frames,
// and the classic BPF filter that passes only those to one UDP port: what
// vmrun's layer-2 DHCP responder and its upstream DHCP client need on their
// packet sockets.
package udpframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/mdlayher/ethernet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	protoUDP      = 17
)

// Datagram is one UDP/IPv4 Datagram carried in an Ethernet frame.
type Datagram struct {
	SrcMAC, DstMAC   net.HardwareAddr
	Src, Dst         net.IP
	SrcPort, DstPort int
	Payload          []byte
}

// ErrNotUDP4 marks a frame that is not an unfragmented UDP/IPv4 Datagram.
var ErrNotUDP4 = errors.New("not an unfragmented udp/ipv4 Datagram")

// Parse decodes an Ethernet frame holding a UDP/IPv4 Datagram. It
// checks lengths but not checksums: a guest that offloads checksums (virtio
// with a vnet header) hands the tap frames whose UDP checksum is still
// partial, and the kernel does not verify it for packet sockets either.
func Parse(b []byte) (*Datagram, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("ethernet frame: %w", err)
	}
	if f.EtherType != ethernet.EtherTypeIPv4 {
		return nil, ErrNotUDP4
	}
	p := f.Payload
	if len(p) < ipv4HeaderLen || p[0]>>4 != 4 {
		return nil, ErrNotUDP4
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	fragment := binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 // MF flag or an offset
	if ihl < ipv4HeaderLen || total < ihl+udpHeaderLen || total > len(p) || fragment || p[9] != protoUDP {
		return nil, ErrNotUDP4
	}
	u := p[ihl:total] // drops Ethernet padding
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < udpHeaderLen || ulen > len(u) {
		return nil, ErrNotUDP4
	}
	return &Datagram{
		SrcMAC:  f.Source,
		DstMAC:  f.Destination,
		Src:     net.IP(append([]byte(nil), p[12:16]...)),
		Dst:     net.IP(append([]byte(nil), p[16:20]...)),
		SrcPort: int(binary.BigEndian.Uint16(u[0:2])),
		DstPort: int(binary.BigEndian.Uint16(u[2:4])),
		Payload: u[udpHeaderLen:ulen],
	}, nil
}

// marshal encodes d as an Ethernet frame with IPv4 and UDP headers and
// both checksums filled in. The IPv4 header is written by hand because
// x/net/ipv4's Header.Marshal produces the local raw-socket layout, which
// is not the wire format on every system.
func (d *Datagram) Marshal() ([]byte, error) {
	src, dst := d.Src.To4(), d.Dst.To4()
	if src == nil || dst == nil {
		return nil, fmt.Errorf("udp Datagram %v -> %v: not ipv4 addresses", d.Src, d.Dst)
	}
	ulen := udpHeaderLen + len(d.Payload)
	if ipv4HeaderLen+ulen > 0xffff {
		return nil, fmt.Errorf("udp Datagram %v -> %v: payload of %d bytes is too long", d.Src, d.Dst, len(d.Payload))
	}
	p := make([]byte, ipv4HeaderLen+ulen)
	ip := p[:ipv4HeaderLen]
	ip[0] = 4<<4 | ipv4HeaderLen/4
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(p)))
	ip[8] = 64 // TTL
	ip[9] = protoUDP
	copy(ip[12:16], src)
	copy(ip[16:20], dst)
	binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(ip, 0)))

	u := p[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:2], uint16(d.SrcPort))
	binary.BigEndian.PutUint16(u[2:4], uint16(d.DstPort))
	binary.BigEndian.PutUint16(u[4:6], uint16(ulen))
	copy(u[udpHeaderLen:], d.Payload)
	pseudo := sum(src, 0)
	pseudo = sum(dst, pseudo)
	pseudo += protoUDP + uint32(ulen)
	c := ^fold(sum(u, pseudo))
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(u[6:8], c)

	f := ethernet.Frame{Destination: d.DstMAC, Source: d.SrcMAC, EtherType: ethernet.EtherTypeIPv4, Payload: p}
	return f.MarshalBinary()
}

// sum adds b to the one's-complement accumulator acc (RFC 1071).
func sum(b []byte, acc uint32) uint32 {
	for len(b) >= 2 {
		acc += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// fold folds the carries of a checksum accumulator into 16 bits.
func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// PortFilter returns a classic BPF program for a raw (SOCK_RAW) packet
// socket that accepts only incoming (not locally sent) unfragmented
// UDP/IPv4 frames to dstPort.
func PortFilter(dstPort uint16) ([]bpf.RawInstruction, error) {
	prog := append([]bpf.Instruction{
		// Frames this host sends on the link (for a tap: frames to the
		// guest, including those a bridge floods to it) are not requests.
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}, PortMatch(dstPort)...)
	return bpf.Assemble(prog)
}

// PortMatch is the part of PortFilter that x/net/bpf's VM can run
// (it has no packet-type extension): IPv4, UDP, first fragment, port.
func PortMatch(dstPort uint16) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(ethernet.EtherTypeIPv4), SkipTrue: 8},
		bpf.LoadAbsolute{Off: 14 + 9, Size: 1}, // IP protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoUDP, SkipTrue: 6},
		bpf.LoadAbsolute{Off: 14 + 6, Size: 2}, // flags and fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 4},
		bpf.LoadMemShift{Off: 14},              // X = IP header length
		bpf.LoadIndirect{Off: 14 + 2, Size: 2}, // UDP destination port
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(dstPort), SkipTrue: 1},
		bpf.RetConstant{Val: 0x40000},
		bpf.RetConstant{Val: 0},
	}
}
