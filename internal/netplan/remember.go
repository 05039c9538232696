package netplan

import (
	"context"
	"fmt"
	"time"

	"github.com/vmrun/vmrun/internal/netmemory"
	"github.com/vmrun/vmrun/netsetup"
)

// Remember records that on the network behind facts the guest had to
// leave from for to (why), so that the next --net auto run there starts
// in to (Remembered). It returns a --verbose line saying what was
// recorded, or why nothing was (the gateway's MAC is unknown), and the
// error of a failed write.
func Remember(ctx context.Context, facts netsetup.Facts, from, to netsetup.Mode, why string) (string, error) {
	key := netsetup.ResolveNetworkKey(ctx, facts)
	if key == "" {
		return fmt.Sprintf("network: not remembering %s for this network (its gateway's MAC is unknown)", to), nil
	}
	o := netmemory.Outcome{Mode: string(to), From: string(from), Why: why, When: time.Now().UTC()}
	if err := netmemory.Remember(key, o); err != nil {
		return "", fmt.Errorf("network: could not remember %s for this network: %w", to, err)
	}
	return fmt.Sprintf("network: remembered %s for %s (%s)", to, key, netmemory.Path()), nil
}
