package learn

import (
	"net"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vmrun/vmrun/internal/testutil"
)

// TestReadFrames: frames reach the handler; the link going down and up
// again does not end the loop (ENETDOWN); closing stop and waking the read
// ends it without an error.
func TestReadFrames(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "rf")
	ns.MustRun(t, "ip", "link", "add", "rfa", "type", "veth", "peer", "name", "rfb")
	ns.MustRun(t, "ip", "link", "set", "rfa", "up")
	ns.MustRun(t, "ip", "link", "set", "rfb", "up")
	var rx, tx *packet.Conn
	if err := ns.Do(func() error {
		a, err := net.InterfaceByName("rfa")
		if err != nil {
			return err
		}
		b, err := net.InterfaceByName("rfb")
		if err != nil {
			return err
		}
		if rx, err = packet.Listen(a, packet.Raw, 0x88b5, nil); err != nil { // local experimental EtherType
			return err
		}
		tx, err = packet.Listen(b, packet.Raw, 0x88b5, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	defer rx.Close()
	frame, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		EtherType: 0x88b5, Payload: make([]byte, 46)}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	send := func() {
		if _, err := tx.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			t.Errorf("send: %v", err)
		}
	}
	got := make(chan int, 16)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- ReadFrames(rx, make([]byte, 1500), stop, func(f []byte) { got <- len(f) }) }()
	// A frame sent while the link is not yet (or no longer) running is
	// lost: send again every 100 ms until one is handled, within a
	// generous bound.
	const bound = time.Minute
	wait := func(what string) {
		t.Helper()
		for deadline := time.After(bound); ; {
			send()
			select {
			case <-got:
				return
			case err := <-done:
				t.Fatalf("%s: ReadFrames ended: %v", what, err)
			case <-deadline:
				t.Fatalf("%s: no frame handled within %s", what, bound)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	wait("first frame")
	// The kernel sets ENETDOWN on the packet socket while the link goes
	// down (before `ip` returns), and the next read returns it: the
	// reader meets it whether it was blocked then or not, no pause needed.
	ns.MustRun(t, "ip", "link", "set", "rfa", "down")
	ns.MustRun(t, "ip", "link", "set", "rfa", "up")
	wait("after the link went down and up")
	close(stop)
	_ = rx.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadFrames after stop: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("ReadFrames did not return within %s after stop", bound)
	}
}
