package netplan

import (
	"testing"

	"github.com/vmrun/vmrun/netsetup"
)

func TestFollowsUplink(t *testing.T) {
	for mode, want := range map[netsetup.Mode]bool{
		netsetup.Auto: true, "": true, netsetup.Bridge: true, netsetup.Macvtap: true, netsetup.IPVtap: true, netsetup.Routed: true,
		netsetup.NAT: false, netsetup.User: false, netsetup.None: false,
	} {
		if got := FollowsUplink(mode); got != want {
			t.Errorf("FollowsUplink(%q) = %v, want %v", mode, got, want)
		}
	}
}
