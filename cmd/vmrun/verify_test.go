package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/netsetup"
)

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
			got := leftBecause(why, tt.plan, tt.before)
			if !strings.HasPrefix(got, why) {
				t.Fatalf("%q does not start with the verdict", got)
			}
			if tt.want == "" && got != why || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("leftBecause = %q, want the verdict and %q", got, tt.want)
			}
			if strings.ContainsAny(got, "()") {
				t.Errorf("%q has parentheses: the switch line puts the reason in them", got)
			}
		})
	}
}
