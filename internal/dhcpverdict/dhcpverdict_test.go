package dhcpverdict

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/netsetup"
)

// newVerifier returns an armed verifier with short bounds and the channel
// its verdicts arrive on.
func newVerifier(wait time.Duration, need int) (*Verifier, <-chan string) {
	c := make(chan string, 4)
	v := &Verifier{}
	v.arm(true, wait, need, func(why string) { c <- why })
	return v, c
}

func TestVerdictNoAnswer(t *testing.T) {
	v, c := newVerifier(50*time.Millisecond, 3)
	for range 3 {
		v.Discover(1)
	}
	select {
	case why := <-c:
		if !strings.Contains(why, "no DHCP answer") || !strings.Contains(why, "3 DISCOVERs") {
			t.Fatalf("why = %q", why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict after 3 unanswered DISCOVERs and the wait")
	}
	v.Discover(1)
	select {
	case why := <-c:
		t.Fatalf("a second verdict: %q", why)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestVerdictNeedsRetries: the wait alone is no verdict while the guest
// sent fewer DISCOVERs than needed; its next one past the wait is.
func TestVerdictNeedsRetries(t *testing.T) {
	v, c := newVerifier(50*time.Millisecond, 3)
	v.Discover(1)
	v.Discover(1)
	select {
	case why := <-c:
		t.Fatalf("verdict after 2 DISCOVERs: %q", why)
	case <-time.After(150 * time.Millisecond):
	}
	v.Discover(1)
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict at the third DISCOVER past the wait")
	}
}

func TestVerdictAnswered(t *testing.T) {
	v, c := newVerifier(50*time.Millisecond, 2)
	v.Discover(1)
	v.Answered()
	v.Discover(1)
	v.Discover(1)
	select {
	case why := <-c:
		t.Fatalf("verdict after the LAN answered: %q", why)
	case <-time.After(150 * time.Millisecond):
	}
}

func TestVerifies(t *testing.T) {
	mac := netsetup.DeriveMAC("v")
	for _, c := range []struct {
		req, mode netsetup.Mode
		want      bool
	}{
		{netsetup.Auto, netsetup.Macvtap, true},
		{netsetup.Auto, netsetup.Bridge, true},
		{netsetup.Auto, netsetup.Routed, false},
		{netsetup.Auto, netsetup.IPVtap, false},
		{netsetup.Macvtap, netsetup.Macvtap, false},
	} {
		if got := Verifies(c.req, netsetup.Plan{Mode: c.mode, MAC: mac}); got != c.want {
			t.Errorf("Verifies(%s, %s) = %v, want %v", c.req, c.mode, got, c.want)
		}
	}
}

// TestVerdictRearmed: arming again (the guest moved to a new LAN) starts
// afresh: the DISCOVERs sent on the attachment before do not count, a
// verdict needs the full count again, and arming with on false ends a
// pending one.
func TestVerdictRearmed(t *testing.T) {
	c := make(chan string, 4)
	fail := func(why string) { c <- why }
	v := &Verifier{}
	v.arm(true, 50*time.Millisecond, 3, fail)
	v.Discover(1)
	v.Discover(1)
	v.arm(true, 50*time.Millisecond, 3, fail)
	v.Discover(1)
	select {
	case why := <-c:
		t.Fatalf("verdict counting the DISCOVERs of the attachment before: %q", why)
	case <-time.After(150 * time.Millisecond):
	}
	v.Discover(1)
	v.Discover(1)
	select {
	case why := <-c:
		if !strings.Contains(why, "3 DISCOVERs") {
			t.Fatalf("why = %q, want 3 DISCOVERs since the new arm", why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict after 3 DISCOVERs on the new attachment")
	}
	v.arm(true, 50*time.Millisecond, 3, fail)
	for range 3 {
		v.Discover(1)
	}
	v.arm(false, 50*time.Millisecond, 3, fail)
	select {
	case why := <-c:
		t.Fatalf("a verdict after it was disarmed: %q", why)
	case <-time.After(150 * time.Millisecond):
	}
}

// TestLeftBecause: the line of a move off layer 2 says what the LAN is —
// one that answers the host but not the guest (routed took its lease
// upstream through the host's MAC), or one whose DHCP answers neither
// (NAT after routed found no lease) — and nothing it does not know.
func TestLeftBecause(t *testing.T) {
	why := "no DHCP answer for the guest in 10 s, 4 DISCOVERs"
	noLease := fmt.Errorf("routed: %w", netsetup.ErrNoLease)
	tests := []struct {
		name   string
		plan   netsetup.Plan
		before []error
		want   string // a part of the reason; "" for why alone
	}{
		{"routed, leased upstream", netsetup.Plan{Mode: netsetup.Routed, GuestAddr: netsetup.GuestAddrUpstream}, nil, "the LAN answers the host but not the guest"},
		{"routed, static address", netsetup.Plan{Mode: netsetup.Routed, GuestAddr: netsetup.GuestAddrStatic}, nil, ""},
		{"nat after routed found no lease", netsetup.Plan{Mode: netsetup.NAT}, []error{noLease}, "answers neither the guest nor the host"},
		{"nat after routed failed otherwise", netsetup.Plan{Mode: netsetup.NAT}, []error{errors.New("routed: no CAP_NET_ADMIN")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LeftBecause(why, tt.plan, tt.before)
			if !strings.HasPrefix(got, why) {
				t.Fatalf("%q does not start with the verdict", got)
			}
			if tt.want == "" && got != why || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("LeftBecause = %q, want the verdict and %q", got, tt.want)
			}
			if strings.ContainsAny(got, "()") {
				t.Errorf("%q has parentheses: the switch line puts the reason in them", got)
			}
		})
	}
}

// TestProbeNotTheGuest: the probe's DISCOVERs (its xid) are not counted as
// the guest's, and the guest's first one ends the probe, whose "refused"
// then moves nothing.
func TestProbeNotTheGuest(t *testing.T) {
	v, c := newVerifier(50*time.Millisecond, 2)
	ctx, refused, ok := v.Probe(context.Background(), 0xabcd)
	if !ok {
		t.Fatal("no probe on an armed verifier")
	}
	for range 3 {
		v.Discover(0xabcd)
	}
	select {
	case why := <-c:
		t.Fatalf("the probe's DISCOVERs made a verdict: %q", why)
	case <-time.After(150 * time.Millisecond):
	}
	if ctx.Err() != nil {
		t.Fatal("the probe's own DISCOVERs ended it")
	}
	v.Discover(1)
	if ctx.Err() == nil {
		t.Fatal("the guest's first DISCOVER did not end the probe")
	}
	refused("no answer", func(string) bool { t.Error("a probe cut short moved the guest"); return true })
	v.Discover(1)
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest's own verdict did not come")
	}
}

// TestProbeMoves: an unanswered probe moves the guest at its first
// DISCOVER (not before: a booting guest cannot release its NIC); a
// failed move leaves the guest's verdict as it was, which comes then,
// once.
func TestProbeMoves(t *testing.T) {
	// No wait: the third DISCOVER is a verdict at once.
	v, c := newVerifier(0, 3)
	_, refused, _ := v.Probe(context.Background(), 7)
	if _, _, again := v.Probe(context.Background(), 8); again {
		t.Fatal("a second probe for one arm")
	}
	moves := make(chan string, 4)
	release := make(chan bool)
	refused("probe: no answer", func(why string) bool { moves <- why; return <-release })
	select {
	case why := <-moves:
		t.Fatalf("moved before the guest's first DISCOVER: %q", why)
	case <-time.After(100 * time.Millisecond):
	}
	v.Discover(1)
	if why := <-moves; why != "probe: no answer" {
		t.Fatalf("moved for %q", why)
	}
	// The guest's verdict falls due during the move: it waits.
	v.Discover(1)
	v.Discover(1)
	select {
	case why := <-c:
		t.Fatalf("a verdict during the probe's move: %q", why)
	case <-time.After(100 * time.Millisecond):
	}
	release <- false
	select {
	case why := <-c:
		if !strings.Contains(why, "3 DISCOVERs") {
			t.Errorf("why = %q", why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held verdict did not come after the probe's move failed")
	}
	select {
	case why := <-moves:
		t.Fatalf("a second move: %q", why)
	default:
	}
	// Disarmed: no probe.
	if _, _, ok := v.Probe(context.Background(), 9); ok {
		t.Fatal("a probe after the verdict")
	}
}

// TestProbeMoveDone: a move that worked (its switch arms the verdict
// again) ends the probe's part; the new arm knows nothing of it.
func TestProbeMoveDone(t *testing.T) {
	v, _ := newVerifier(0, 2)
	c := make(chan string, 4)
	_, refused, _ := v.Probe(context.Background(), 7)
	done := make(chan struct{})
	refused("probe: no answer", func(string) bool {
		v.arm(true, 0, 2, func(why string) { c <- why }) // the switch's Arm
		close(done)
		return true
	})
	v.Discover(1)
	<-done
	v.Discover(2)
	v.Discover(2)
	select {
	case <-c: // the new attachment's own verdict
	case <-time.After(10 * time.Second):
		t.Fatal("the new arm's verdict did not come")
	}
}

// TestProbeEndsWithArm: answering the guest or arming again ends the probe.
func TestProbeEndsWithArm(t *testing.T) {
	v, _ := newVerifier(time.Hour, 2)
	ctx, _, _ := v.Probe(context.Background(), 7)
	v.Answered()
	if ctx.Err() == nil {
		t.Fatal("an answer to the guest did not end the probe")
	}
	v.Arm(true, func(string) {})
	ctx, refused, _ := v.Probe(context.Background(), 7)
	v.Arm(false, nil)
	if ctx.Err() == nil {
		t.Fatal("arming again did not end the probe")
	}
	refused("x", func(string) bool { t.Error("moved after a re-arm"); return true })
	v.Arm(true, func(string) {})
	v.Discover(1)
}
