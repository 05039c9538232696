package fakeguest

import (
	"encoding/binary"
	"net"
)

// ethFrame builds an Ethernet frame.
func ethFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], etherType)
	return append(f, payload...)
}

// arp is a parsed Ethernet/IPv4 ARP packet.
type arp struct {
	op       uint16
	sha, tha net.HardwareAddr
	spa, tpa net.IP
}

// arpFrame builds an ARP request (op 1, broadcast) or reply (op 2).
func arpFrame(op uint16, sha net.HardwareAddr, spa net.IP, tha net.HardwareAddr, tpa net.IP) []byte {
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:], 1)         // Ethernet
	binary.BigEndian.PutUint16(p[2:], etherIPv4) // IPv4
	p[4], p[5] = 6, 4                            // address lengths
	binary.BigEndian.PutUint16(p[6:], op)        // request/reply
	copy(p[8:14], sha)
	copy(p[14:18], spa.To4())
	if op == 2 {
		copy(p[18:24], tha)
	}
	copy(p[24:28], tpa.To4())
	return ethFrame(tha, sha, etherARP, p)
}

func parseARP(f []byte) (arp, bool) {
	if len(f) < 14+28 || binary.BigEndian.Uint16(f[12:14]) != etherARP {
		return arp{}, false
	}
	p := f[14:]
	return arp{
		op:  binary.BigEndian.Uint16(p[6:8]),
		sha: net.HardwareAddr(p[8:14]), spa: net.IP(p[14:18]),
		tha: net.HardwareAddr(p[18:24]), tpa: net.IP(p[24:28]),
	}, true
}

// ipv4 is a parsed IPv4 packet.
type ipv4 struct {
	src, dst net.IP
	proto    byte
	payload  []byte
}

// ipv4Frame builds an Ethernet frame with an IPv4 packet (no options).
func ipv4Frame(dstMAC, srcMAC net.HardwareAddr, src, dst net.IP, proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64 // TTL
	h[9] = proto
	copy(h[12:16], src.To4())
	copy(h[16:20], dst.To4())
	binary.BigEndian.PutUint16(h[10:], Checksum(h))
	return ethFrame(dstMAC, srcMAC, etherIPv4, append(h, payload...))
}

func parseIPv4(f []byte) (ipv4, bool) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != etherIPv4 {
		return ipv4{}, false
	}
	p := f[14:]
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if p[0]>>4 != 4 || ihl < 20 || total < ihl || total > len(p) {
		return ipv4{}, false
	}
	return ipv4{src: net.IP(p[12:16]), dst: net.IP(p[16:20]), proto: p[9], payload: p[ihl:total]}, true
}

// icmpEcho builds an ICMP echo request (typ 8) or reply (typ 0).
func icmpEcho(typ byte, id, seq uint16, data []byte) []byte {
	m := make([]byte, 8, 8+len(data))
	m[0] = typ
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	m = append(m, data...)
	binary.BigEndian.PutUint16(m[2:], Checksum(m))
	return m
}

// udp builds a UDP datagram without checksum (allowed over IPv4).
func udp(srcPort, dstPort uint16, data []byte) []byte {
	u := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(data)))
	return append(u, data...)
}

// Checksum is the Internet checksum (RFC 1071), for tests that build
// their own IP packets.
func Checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
