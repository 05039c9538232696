package netsetup

import (
	"context"
	"runtime"

	"github.com/vmrun/vmrun/netsetup/internal/detect"
)

// Detect describes the interface that matters for request r —
// r.Interface(), or the interface of the default route when that is "" —
// and probes the host's capabilities once. It works in the network
// namespace of the calling thread and changes nothing there. A named
// interface that does not exist is not an error: the Facts say so and
// Decide explains it.
func Detect(ctx context.Context, r Request) (Facts, error) {
	if err := ctx.Err(); err != nil {
		return Facts{}, err
	}
	if r.Mode == None {
		// No network: nothing about the uplink matters, and looking (route,
		// nl80211, capabilities) is most of vmrun's start-up work.
		return Facts{Kind: UplinkNone, CPUs: runtime.NumCPU()}, nil
	}
	// user creates no links: skip probing which link types the kernel can
	// create (a throwaway namespace, a few milliseconds; r.ProbeCache keeps
	// the answer per boot).
	return detect.Host(r.Interface(), r.Mode != User, r.ProbeCache)
}

// NetworkKey names the network behind f's uplink for --net auto's memory
// of what worked there (see detect.NetworkKey: the gateway's MAC, and the
// SSID on Wi-Fi); "" when it is not known.
func NetworkKey(f Facts) string { return detect.NetworkKey(f) }

// ResolveNetworkKey is NetworkKey after making the kernel resolve the
// gateway's MAC when it has none (see detect.ResolveNetworkKey). For
// remembering an outcome, not on a run's start path.
func ResolveNetworkKey(ctx context.Context, f Facts) string { return detect.ResolveNetworkKey(ctx, f) }
