package tap

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv4"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

var (
	watchGuestMAC  = net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x57}
	watchServerMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x77, 0x00, 0x01}
)

// vnetHdr is the virtio-net header QEMU writes before each frame on a tap
// or macvtap queue (10 bytes, all zero: no offloads).
var vnetHdr = make([]byte, 10)

// ackBytes is a DHCP server's broadcast ACK granting yiaddr to the guest.
func ackBytes(t testing.TB, yiaddr netip.Addr) []byte {
	t.Helper()
	req, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(watchGuestMAC))
	if err != nil {
		t.Fatal(err)
	}
	m, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(yiaddr.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 1))))
	if err != nil {
		t.Fatal(err)
	}
	payload := m.ToBytes()
	udp := make([]byte, 8, 8+len(payload))
	udp[1], udp[3], udp[5] = 67, 68, byte(8+len(payload))
	udp[4] = byte((8 + len(payload)) >> 8)
	h := ipv4.Header{Version: 4, Len: 20, TotalLen: 20 + len(udp) + len(payload), TTL: 64, Protocol: 17,
		Src: net.IPv4(10, 77, 0, 1), Dst: net.IPv4bcast}
	hb, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: watchServerMAC, EtherType: ethernet.EtherTypeIPv4,
		Payload: append(append(hb, udp...), payload...)}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// garpBytes is the guest's ARP announcement of a.
func garpBytes(t testing.TB, a netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(arp.OperationRequest, watchGuestMAC, a, ethernet.Broadcast, a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: watchGuestMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bridgeRig is a bridge br0 in a fresh namespace, a vmrun tap on it (with
// the watcher of the guest's addresses) and a packet socket on br0 that
// plays the LAN's DHCP server; what the watcher reports goes to report.
type bridgeRig struct {
	ns  *testutil.Netns
	att *hostnet.Attachment
	lan *packet.Conn
}

func newBridgeRig(t testing.TB, report func(hostnet.GuestAddr), rec hostnet.Recorder) *bridgeRig {
	t.Helper()
	r := &bridgeRig{ns: testutil.NewNetns(t, "wa")}
	r.ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	r.ns.MustRun(t, "ip", "link", "set", "br0", "up")
	ctx := hostnet.WithTrace(context.Background(), &hostnet.Trace{Addr: report})
	b := Bridge{Link: hostnet.LinkConfig{VM: "wa", LinkName: "vmrwa0", Parent: "br0", MAC: watchGuestMAC, Queues: 1}}
	if err := r.ns.Do(func() error {
		var err error
		if r.att, err = b.Attach(ctx, rec); err != nil {
			return err
		}
		br, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		r.lan, err = packet.Listen(br, packet.Raw, int(ethernet.EtherTypeIPv4), nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.lan.Close()
		r.att.CloseFiles()
		if err := r.ns.Do(r.att.Undo); err != nil {
			t.Errorf("undo: %v", err)
		}
	})
	return r
}

// fromLAN sends frame on br0, which floods it to the tap: towards the guest.
func (r *bridgeRig) fromLAN(t testing.TB, frame []byte) {
	t.Helper()
	if _, err := r.lan.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
		t.Fatal(err)
	}
}

// fromGuest writes frame into the tap's queue, as QEMU does for the guest.
func (r *bridgeRig) fromGuest(t testing.TB, frame []byte) {
	t.Helper()
	if _, err := r.att.Files[0].Write(append(append([]byte(nil), vnetHdr...), frame...)); err != nil {
		t.Fatal(err)
	}
}

// TestWatchAddrsBridge: on a real tap on a real bridge, the watcher
// reports a DHCP server's ACK to the guest (with the server) and the
// guest's ARP announcement, and nothing for the guest's other traffic;
// Undo stops it.
func TestWatchAddrsBridge(t *testing.T) {
	got := make(chan hostnet.GuestAddr, 16)
	r := newBridgeRig(t, func(a hostnet.GuestAddr) { got <- a }, hostnet.NopRecorder{})
	wait := func(want hostnet.GuestAddr) {
		t.Helper()
		select {
		case a := <-got:
			if a != want {
				t.Fatalf("reported %+v, want %+v", a, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("nothing reported within a minute; want %+v", want)
		}
	}
	// Traffic that tells nothing comes first: were it reported, the
	// next wait would see it instead of the ACK.
	udp := ackBytes(t, netip.MustParseAddr("10.77.0.9"))
	udp[14+20+1] = 53 // source port 53: DNS, not DHCP
	r.fromLAN(t, udp)
	r.fromLAN(t, ackBytes(t, netip.MustParseAddr("10.77.0.57")))
	wait(hostnet.GuestAddr{Addr: netip.MustParseAddr("10.77.0.57"), Server: netip.MustParseAddr("10.77.0.1"), Source: hostnet.SourceDHCP})
	r.fromGuest(t, garpBytes(t, netip.MustParseAddr("10.77.0.58")))
	wait(hostnet.GuestAddr{Addr: netip.MustParseAddr("10.77.0.58"), Source: hostnet.SourceARP})
	if r.att.Services == nil || r.att.Done() == nil {
		t.Fatal("the bridge attachment has no service group")
	}
}

// BenchmarkAddrVisible measures a DHCP server's ACK to the guest, sent on
// the bridge, until `vmrun ls` can see the address: the watcher's socket
// wakes, the frame is parsed, the address is written to the VM's state
// file (as the session's hook does, without an fsync), and a reader lists
// the runtime root and finds it. Each round grants a new address.
func BenchmarkAddrVisible(b *testing.B) {
	root := b.TempDir()
	dir, _, err := rundir.Create(root, "wa")
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Remove()
	written := make(chan string, 1)
	r := newBridgeRig(b, func(a hostnet.GuestAddr) {
		ra := rundir.Address{Addr: a.Addr.String(), Source: a.Source, Server: a.Server.String(), Learnt: time.Now()}
		if changed, err := dir.SetAddress(ra, a.Drop); err == nil && changed {
			written <- ra.Addr
		}
	}, dir)
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		a := netip.AddrFrom4([4]byte{10, 77, byte(1 + i>>8&0x7f), byte(i)})
		frame := ackBytes(b, a)
		t0 := time.Now()
		r.fromLAN(b, frame)
		select {
		case <-written:
		case <-time.After(time.Minute):
			b.Fatalf("round %d: %s not written within a minute", i, a)
		}
		if !listed(b, root, a.String()) {
			b.Fatalf("round %d: %s written but not listed", i, a)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms/ack-to-ls")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms/ack-to-ls")
}

// listed reports whether `vmrun ls`'s reading of root shows addr.
func listed(b *testing.B, root, addr string) bool {
	entries, err := rundir.List(root)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if e.State != nil && slices.ContainsFunc(e.State.Addresses, func(a rundir.Address) bool { return a.Addr == addr }) {
			return true
		}
	}
	return false
}
