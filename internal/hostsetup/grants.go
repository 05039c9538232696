package hostsetup

import (
	"context"
	"strings"

	"github.com/vmrun/vmrun/netsetup"
)

// Caps are the capabilities setup gives the binary: what
// netsetup.SetupGrants says the unprivileged modes need (bridge, macvtap,
// routed), and nothing else.
func Caps() []int {
	var cs []int
	for _, p := range netsetup.SetupGrants() {
		cs = append(cs, p.Number())
	}
	return cs
}

// CapsText is Caps in setcap's words: "cap_net_admin,cap_net_raw,cap_mknod".
func CapsText() string {
	var names []string
	for _, p := range netsetup.SetupGrants() {
		names = append(names, strings.ToLower(string(p)))
	}
	return strings.Join(names, ",")
}

// DefaultAllow is setup's default interface allow-list: the default-route
// interface, and its bridge when it is a bridge port.
func DefaultAllow(ctx context.Context) []string {
	// Not Mode None: Detect looks at nothing for a VM without a network.
	f, err := netsetup.Detect(ctx, netsetup.Request{Mode: netsetup.User})
	if err != nil || f.Uplink == "" {
		return nil
	}
	if f.Master != "" {
		return []string{f.Master, f.Uplink}
	}
	return []string{f.Uplink}
}
