package main

import (
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/netsetup"
)

func TestSSHForward(t *testing.T) {
	seed := config.Spec{CloudInit: config.CloudInit{Seed: true}}
	// User mode with a seed: a forward from a free loopback port to 22.
	plan := netsetup.Plan{Mode: netsetup.User}
	got, err := sshForward(seed, &plan)
	if err != nil || !strings.HasPrefix(got, "127.0.0.1:") || len(plan.Forwards) != 1 ||
		plan.Forwards[0].GuestPort != 22 || plan.Forwards[0].HostAddr != "127.0.0.1" {
		t.Fatalf("user mode: %q %v, forwards %+v", got, err, plan.Forwards)
	}
	// The user's own forward to port 22 is taken, none is added.
	plan = netsetup.Plan{Mode: netsetup.User, Forwards: []netsetup.Forward{{Proto: "tcp", HostPort: 2222, GuestPort: 22}}}
	if got, err := sshForward(seed, &plan); err != nil || got != "127.0.0.1:2222" || len(plan.Forwards) != 1 {
		t.Errorf("user mode with --forward tcp:2222:22: %q %v, forwards %+v", got, err, plan.Forwards)
	}
	// Without a seed, or in a mode where the guest has its own address: none.
	for _, tc := range []struct {
		spec config.Spec
		mode netsetup.Mode
	}{{config.Spec{}, netsetup.User}, {seed, netsetup.Macvtap}, {seed, netsetup.NAT}} {
		plan := netsetup.Plan{Mode: tc.mode}
		if got, err := sshForward(tc.spec, &plan); err != nil || got != "" || len(plan.Forwards) != 0 {
			t.Errorf("%s, seed %v: %q %v, forwards %+v", tc.mode, tc.spec.CloudInit.Seed, got, err, plan.Forwards)
		}
	}
}
