package fakeguest

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"time"
)

// PingVia sends ICMP echo requests to dst through the gateway gw (whose
// MAC it resolves with ARP), as a guest with a /32 address and a default
// route does, until one is answered.
func (g *Guest) PingVia(ctx context.Context, dst, gw net.IP) error {
	mac, err := g.Resolve(ctx, gw)
	if err != nil {
		return fmt.Errorf("ping %s via %s: %w", dst, gw, err)
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
		return fmt.Errorf("ping %s via %s: %w", dst, gw, err)
	}
	return nil
}
