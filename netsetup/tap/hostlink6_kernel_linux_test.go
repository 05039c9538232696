package tap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// ICMPv6 types the fake guest reads and writes.
const (
	icmp6EchoRequest = 128
	icmp6EchoReply   = 129
	icmp6NS          = 135
	icmp6NA          = 136
)

// icmp6Frame is an Ethernet frame holding an IPv6 packet from src to dst
// with the ICMPv6 message msg, whose checksum it fills in.
func icmp6Frame(t testing.TB, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, msg []byte) []byte {
	t.Helper()
	msg = append([]byte(nil), msg...)
	msg[2], msg[3] = 0, 0
	ip := make([]byte, 40, 40+len(msg))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(msg)))
	ip[6], ip[7] = 58, 255
	s16, d16 := src.As16(), dst.As16()
	copy(ip[8:], s16[:])
	copy(ip[24:], d16[:])
	// The checksum over the pseudo-header (addresses, length, next header) and msg.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip[8:40])
	add([]byte{0, 0, byte(len(msg) >> 8), byte(len(msg)), 0, 0, 0, 58})
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
	f := ethernet.Frame{Destination: dstMAC, Source: srcMAC, EtherType: ethernet.EtherTypeIPv6, Payload: append(ip, msg...)}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ndpMsg marshals an NDP message (its checksum is left to icmp6Frame).
func ndpMsg(t testing.TB, m ndp.Message) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// solicitedNode is the solicited-node multicast address of a, and its MAC.
func solicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	m := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
	mb := m.As16()
	return m, net.HardwareAddr{0x33, 0x33, mb[12], mb[13], mb[14], mb[15]}
}

// icmp6In is an ICMPv6 message the fake guest received.
type icmp6In struct {
	srcMAC   net.HardwareAddr
	src, dst netip.Addr
	msg      []byte
}

// readICMP6 returns the ICMPv6 messages written to the guest's queue fd
// (after the virtio-net header) until the fd is closed.
func readICMP6(q interface{ Read([]byte) (int, error) }) <-chan icmp6In {
	c := make(chan icmp6In, 64)
	go func() {
		defer close(c)
		buf := make([]byte, 65536)
		for {
			n, err := q.Read(buf)
			if err != nil {
				return
			}
			var f ethernet.Frame
			if n < len(vnetHdr) || f.UnmarshalBinary(buf[len(vnetHdr):n]) != nil || f.EtherType != ethernet.EtherTypeIPv6 {
				continue
			}
			p := f.Payload
			if len(p) < 44 || p[6] != 58 {
				continue
			}
			c <- icmp6In{srcMAC: f.Source, src: netip.AddrFrom16([16]byte(p[8:24])), dst: netip.AddrFrom16([16]byte(p[24:40])), msg: append([]byte(nil), p[40:]...)}
		}
	}()
	return c
}

// awaitICMP6 waits for a message of type typ in c.
func awaitICMP6(t testing.TB, c <-chan icmp6In, typ byte, what string) icmp6In {
	t.Helper()
	return await(t, c, what, func(m icmp6In) bool { return m.msg[0] == typ })
}

// TestMacvtapHostLinkIPv6: once a macvtap guest announces a global IPv6
// address (duplicate address detection), the host link gets a recorded
// /128 route to it from the host's address on the parent, and the host
// reaches it: a real ping from the host arrives at the guest's queue from
// the host link, the guest's neighbour solicitation for the host's
// address is answered (proxy NDP on the host link), and the guest's echo
// reply gets ping its answer. Undo removes the link and the records.
func TestMacvtapHostLinkIPv6(t *testing.T) {
	testutil.RequireCmd(t, "busybox")
	ns := testutil.NewNetns(t, "hl6")
	ns.MustRun(t, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "lan0")
	ns.MustRun(t, "ip", "-6", "addr", "add", "2001:db8:77::2/64", "dev", "up0", "nodad")
	ns.MustRun(t, "ip", "link", "set", "up0", "up")
	ns.MustRun(t, "ip", "link", "set", "lan0", "up")
	dir := vmDir(t, "hl6")
	ctx, got := addrTrace()
	m := Macvtap{Link: hostnet.LinkConfig{VM: "hl6", LinkName: "vmrh6m", Parent: "up0", MAC: watchGuestMAC, Queues: 1}, HostLink: "vmrh6s"}
	var att *hostnet.Attachment
	if err := ns.Do(func() (err error) { att, err = m.Attach(ctx, recorder{dir}); return err }); err != nil {
		t.Fatal(err)
	}
	in := readICMP6(att.Files[0])
	toLAN := queueWriter(t, att.Files[0])

	// The guest's duplicate address detection of its address.
	guest, host := netip.MustParseAddr("2001:db8:77::57"), netip.MustParseAddr("2001:db8:77::2")
	snm, snmMAC := solicitedNode(guest)
	toLAN(icmp6Frame(t, watchGuestMAC, snmMAC, netip.IPv6Unspecified(), snm, ndpMsg(t, &ndp.NeighborSolicitation{TargetAddress: guest})))
	if a := awaitAddr(t, got); a.Addr != guest || a.Source != hostnet.SourceNDP {
		t.Fatalf("watcher reported %+v, want %s by NDP", a, guest)
	}
	if !hasObject(dir, hostnet.ObjRoute, "2001:db8:77::57/128") {
		t.Errorf("the route to the guest is not recorded: %+v", dir.State().Objects)
	}
	if r := ns.MustRun(t, "ip", "-6", "route", "get", guest.String()); !strings.Contains(r, "dev vmrh6s") || !strings.Contains(r, "src "+host.String()) {
		t.Errorf("route to the guest: %s; want it through the host link from %s", r, host)
	}

	// The host pings the guest; the fake guest answers as a stack would.
	req, na := pingFromHost6(t, ns, in, toLAN, watchGuestMAC, guest, host, false)
	if na.srcMAC.String() != req.srcMAC.String() {
		t.Errorf("the host's address is advertised at %s, its echo request came from %s", na.srcMAC, req.srcMAC)
	}
	undoLeavesNothing(t, ns, att, dir, "vmrh6")
}
