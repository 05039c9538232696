package netplan

import (
	"context"
	"strings"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/hostcheck"
	"github.com/vmrun/vmrun/netsetup"
)

// AutoVerdict is `vmrun doctor`'s plan of --net auto here (within
// limits): ok when it is a layer-2 mode.
func AutoVerdict(ctx context.Context, limits *netsetup.Limits) (hostcheck.Auto, bool) {
	cfg := config.Defaults()
	cfg.Kernel, cfg.Name = "/dev/null", "doctor"
	spec, err := cfg.Resolve()
	if err == nil {
		var p netsetup.Plan
		if p, err = Plan(ctx, Request(spec, limits)); err == nil {
			a := hostcheck.Auto{Mode: string(p.Mode), Parent: p.Parent, Reason: p.Reason, Notice: p.Notice}
			switch p.Mode {
			case netsetup.Bridge, netsetup.Macvtap, netsetup.IPVtap:
				return a, true
			}
			return a, false
		}
	}
	return hostcheck.Auto{Mode: "none", Reason: strings.Join(strings.Fields(err.Error()), " ")}, false
}
