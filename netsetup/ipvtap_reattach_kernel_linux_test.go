package netsetup_test

import (
	"bytes"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
)

// TestIPVtapReattachSameVM: a switch that fails first (its attachment,
// waiting for the address, is undone: the lease stays the first
// attachment's, not released); then the same VM attached again on its parent —
// the next generation's links, as vmrun's switch makes them when the
// parent's MAC changed — while the first attachment still holds the
// guest's address. The new attachment leases the same address (the VM's
// client identifier), finds it on the first attachment's link and waits;
// once the first attachment is removed (which releases the lease
// upstream) it registers the address, renews the lease with the LAN's
// server, answers its guest with it, and the LAN reaches the guest
// through it. Before, the new attachment gave up at the busy address and
// held no lease for its guest until the upstream renewal, minutes later.
func TestIPVtapReattachSameVM(t *testing.T) {
	t.Parallel()
	e := vethEnv(t)
	capt := e.captureBootRequests(t)
	vmID := dhcpupstream.VMClientID("ipv-again")
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-again", NoHostLink: true})
	ctx1, log1 := notices(ctxT(t, 3*time.Minute))
	a, err := e.apply(t, ctx1, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := fakeguest.NewQueues(a.Files, a.MAC, true)
	defer g.Close()
	l1 := guestDHCP(t, ctx1, g, "the first attachment")
	waitNotice(t, log1, regexp.QuoteMeta(fmt.Sprintf("%s: guest address %s registered", e.parent, l1.IP)))
	busy := regexp.QuoteMeta(fmt.Sprintf("the guest's lease %s: another ipvlan link on %s has the address", l1.IP, e.parent))

	// A switch that fails before the guest's NIC is swapped: its
	// attachment waits for the address and is undone. The lease is the
	// first attachment's: not released then (the end counts the RELEASEs).
	fEvents := testutil.NewLineBuffer()
	ctxF := netsetup.WithTrace(ctxT(t, 3*time.Minute), &netsetup.Trace{Notice: func(string) {}, Event: func(m string) { fmt.Fprintln(fEvents, m) }})
	f, err := e.apply(t, ctxF, p.WithGen(2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fEvents.WaitFor(busy, time.Minute); err != nil {
		t.Fatalf("the failed switch's attachment: %v; events:\n%s", err, fEvents)
	}
	if err := f.Undo(); err != nil {
		t.Fatal(err)
	}

	events, log2 := testutil.NewLineBuffer(), testutil.NewLineBuffer()
	ctx2 := netsetup.WithTrace(ctxT(t, 3*time.Minute), &netsetup.Trace{
		Notice: func(m string) { fmt.Fprintln(log2, m) },
		Event:  func(m string) { fmt.Fprintln(events, m) },
	})
	b, err := e.apply(t, ctx2, p.WithGen(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The first attachment holds the address until it is undone.
	if _, err := events.WaitFor(busy, time.Minute); err != nil {
		t.Fatalf("%v; events:\n%s\nnotices:\n%s", err, events, log2)
	}
	g.Close()
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, log2, regexp.QuoteMeta(fmt.Sprintf("%s: guest address %s registered", e.parent, l1.IP)))
	g2 := fakeguest.NewQueues(b.Files, b.MAC, true)
	defer g2.Close()
	if l2 := guestDHCP(t, ctx2, g2, "the second attachment"); !l2.IP.Equal(l1.IP) {
		t.Errorf("the second attachment's guest got %s, the first's had %s", l2.IP, l1.IP)
	}
	if err := e.lan.Ping(l1.IP.String(), 20*time.Second); err != nil {
		t.Fatalf("LAN → guest through the second attachment: %v; notices:\n%s", err, log2)
	}
	// The first attachment released the lease; the second renewed it.
	end := time.After(time.Minute)
	for !requestAfterRelease(capt.all(), vmID) {
		select {
		case <-capt.wake:
		case <-end:
			t.Fatalf("no REQUEST of the VM's reached the LAN after the first attachment's RELEASE; events:\n%s", events)
		}
	}
	if n := releases(capt.all(), vmID); n != 1 {
		t.Errorf("%d RELEASEs of the VM's lease reached the LAN, want 1: the first attachment's (the failed switch's attachment never had the address)", n)
	}
}

// releases counts the RELEASEs in seen with client identifier id.
func releases(seen []bootRequest, id []byte) (n int) {
	for _, r := range seen {
		if r.typ == dhcpv4.MessageTypeRelease && bytes.Equal(r.clientID, id) {
			n++
		}
	}
	return n
}

// requestAfterRelease: seen has a RELEASE with client identifier id, and
// a REQUEST with it after that.
func requestAfterRelease(seen []bootRequest, id []byte) bool {
	released := false
	for _, r := range seen {
		switch {
		case r.typ == dhcpv4.MessageTypeRelease && bytes.Equal(r.clientID, id):
			released = true
		case released && r.typ == dhcpv4.MessageTypeRequest && bytes.Equal(r.clientID, id):
			return true
		}
	}
	return false
}
