package dhcpverdict

import (
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
		v.Discover()
	}
	select {
	case why := <-c:
		if !strings.Contains(why, "no DHCP answer") || !strings.Contains(why, "3 DISCOVERs") {
			t.Fatalf("why = %q", why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict after 3 unanswered DISCOVERs and the wait")
	}
	v.Discover()
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
	v.Discover()
	v.Discover()
	select {
	case why := <-c:
		t.Fatalf("verdict after 2 DISCOVERs: %q", why)
	case <-time.After(150 * time.Millisecond):
	}
	v.Discover()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict at the third DISCOVER past the wait")
	}
}

func TestVerdictAnswered(t *testing.T) {
	v, c := newVerifier(50*time.Millisecond, 2)
	v.Discover()
	v.Answered()
	v.Discover()
	v.Discover()
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
	v.Discover()
	v.Discover()
	v.arm(true, 50*time.Millisecond, 3, fail)
	v.Discover()
	select {
	case why := <-c:
		t.Fatalf("verdict counting the DISCOVERs of the attachment before: %q", why)
	case <-time.After(150 * time.Millisecond):
	}
	v.Discover()
	v.Discover()
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
		v.Discover()
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
