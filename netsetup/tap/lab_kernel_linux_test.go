package tap

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// The host-link and host-route tests' shared steps: a VM's runtime
// directory, the attachment made in the test's namespace with a raw
// socket on the LAN side, the addresses the watcher reports, the guest's
// queue, the host's ping, and what Undo must leave.

// vmDir is VM name's runtime directory, removed when the test ends.
func vmDir(t testing.TB, name string) *rundir.Dir {
	t.Helper()
	dir, _, err := rundir.Create(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Remove() })
	return dir
}

// addrTrace is a context whose trace sends each guest address the
// watcher reports to the returned channel.
func addrTrace() (context.Context, <-chan hostnet.GuestAddr) {
	got := make(chan hostnet.GuestAddr, 16)
	return hostnet.WithTrace(context.Background(), &hostnet.Trace{Addr: func(a hostnet.GuestAddr) { got <- a }}), got
}

// awaitAddr waits for the watcher's next address (a minute at most).
func awaitAddr(t testing.TB, got <-chan hostnet.GuestAddr) hostnet.GuestAddr {
	t.Helper()
	select {
	case a := <-got:
		return a
	case <-time.After(time.Minute):
		t.Fatal("no address reported within a minute")
		return hostnet.GuestAddr{}
	}
}

// attachWithLAN runs attach in ns and opens a raw IPv4 socket on link
// lanIf there, closed when the test ends: the LAN side the test's DHCP
// ACKs come from.
func attachWithLAN(t testing.TB, ns *testutil.Netns, attach func() (*hostnet.Attachment, error), lanIf string) (*hostnet.Attachment, *packet.Conn) {
	t.Helper()
	var att *hostnet.Attachment
	var lan *packet.Conn
	if err := ns.Do(func() error {
		var err error
		if att, err = attach(); err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(lanIf)
		if err != nil {
			return err
		}
		lan, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeIPv4), nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lan.Close() })
	return att, lan
}

// broadcastACK sends a DHCP ACK of guest to everyone on lan.
func broadcastACK(t testing.TB, lan *packet.Conn, guest netip.Addr) {
	t.Helper()
	if _, err := lan.WriteTo(ackBytes(t, guest), &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
		t.Fatal(err)
	}
}

// await waits (30 s at most) for an item of c, the guest's queue as
// frames or messages, that match accepts.
func await[T any](t testing.TB, c <-chan T, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c:
			if !ok {
				t.Fatalf("the guest's queue closed before %s", what)
			}
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s reached the guest within 30 s", what)
		}
	}
}

// queueWriter writes an Ethernet frame to the guest's queue q, after
// the virtio-net header, as the guest would send it.
func queueWriter(t testing.TB, q io.Writer) func(frame []byte) {
	return func(frame []byte) {
		t.Helper()
		if _, err := q.Write(append(append([]byte(nil), vnetHdr...), frame...)); err != nil {
			t.Fatal(err)
		}
	}
}

// awaitPing waits for the host's ping of guest to end (a minute at
// most) and fails unless it got its answer.
func awaitPing(t testing.TB, ping *testutil.Process, guest netip.Addr) {
	t.Helper()
	select {
	case <-ping.Exited:
		if code := ping.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("ping %s from the host: exit %d\n%s", guest, code, ping.Out)
		}
	case <-time.After(time.Minute):
		t.Fatalf("ping %s still running after a minute\n%s", guest, ping.Out)
	}
}

// pingFromHost6 has the host in ns ping guest once and the fake guest
// (guestMAC, writing with toLAN, reading in) answer as a stack would:
// the host's solicitation for the guest first when solicit is set, then
// the echo request (from host), the guest's own solicitation for the
// host's address (which must be answered for host) and its echo reply.
// It returns the echo request and that answer.
func pingFromHost6(t testing.TB, ns *testutil.Netns, in <-chan icmp6In, toLAN func([]byte), guestMAC net.HardwareAddr, guest, host netip.Addr, solicit bool) (req, na icmp6In) {
	t.Helper()
	ping := ns.Start(t, "busybox", "ping", "-6", "-c", "1", "-W", "30", guest.String())
	if solicit {
		sol := awaitICMP6(t, in, icmp6NS, "the host's neighbour solicitation for the guest")
		toLAN(icmp6Frame(t, guestMAC, sol.srcMAC, guest, sol.src, ndpMsg(t, &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: guest,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: guestMAC}}})))
	}
	req = awaitICMP6(t, in, icmp6EchoRequest, "the host's echo request")
	if req.src != host || req.dst != guest {
		t.Fatalf("echo request %s -> %s, want %s -> %s", req.src, req.dst, host, guest)
	}
	hsnm, hsnmMAC := solicitedNode(host)
	toLAN(icmp6Frame(t, guestMAC, hsnmMAC, guest, hsnm, ndpMsg(t, &ndp.NeighborSolicitation{TargetAddress: host,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: guestMAC}}})))
	na = awaitICMP6(t, in, icmp6NA, "answer to the guest's neighbour solicitation for the host's address")
	nm, err := ndp.ParseMessage(na.msg)
	if a, ok := nm.(*ndp.NeighborAdvertisement); err != nil || !ok || a.TargetAddress != host {
		t.Fatalf("neighbour advertisement %+v, %v; want one for %s", nm, err, host)
	}
	toLAN(icmp6Frame(t, guestMAC, na.srcMAC, guest, host, append([]byte{icmp6EchoReply}, req.msg[1:]...)))
	awaitPing(t, ping, guest)
	return req, na
}

// undoLeavesNothing closes att's files, undoes it in ns, and checks that
// no link whose name holds linkPart and no record in dir is left.
func undoLeavesNothing(t testing.TB, ns *testutil.Netns, att *hostnet.Attachment, dir *rundir.Dir, linkPart string) {
	t.Helper()
	att.CloseFiles()
	if err := ns.Do(att.Undo); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if links := strings.Join(ns.Links(t), " "); strings.Contains(links, linkPart) {
		t.Errorf("links after undo: %s", links)
	}
	if objs := dir.State().Objects; len(objs) != 0 {
		t.Errorf("records after undo: %+v", objs)
	}
}
