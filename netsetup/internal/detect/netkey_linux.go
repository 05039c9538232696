package detect

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// NetworkKey names the network behind f's uplink for --net auto's memory
// of what worked there: "gateway MAC" of the default route's next hop, read
// from the kernel's neighbour table (an entry the host has, stale or not),
// and on a Wi-Fi uplink the SSID the station is associated with first
// (`ssid "home" gateway MAC`: two Wi-Fi networks behind gateways with one
// MAC — an ISP's default router, one box with several SSIDs — do not
// share an outcome). "" when there is no gateway or its MAC is not known:
// nothing is remembered or looked up then.
func NetworkKey(f Facts) string {
	gw := gatewayMAC(f)
	if gw == "" {
		return ""
	}
	var ssid string
	if f.Kind == UplinkWireless {
		ssid, _ = Association(f.Index)
	}
	return networkKey(gw, ssid)
}

// networkKey is the key of the network behind a gateway with MAC gw,
// reached through Wi-Fi network ssid ("" on a wired uplink).
func networkKey(gw, ssid string) string {
	if ssid == "" {
		return "gateway " + gw
	}
	return fmt.Sprintf("ssid %q gateway %s", ssid, gw)
}

// gatewayMAC is the MAC of f's default gateway from the kernel's neighbour
// table, "" when unknown.
func gatewayMAC(f Facts) string {
	if f.Route == nil || f.Route.Gateway == "" || f.Index == 0 {
		return ""
	}
	gw := net.ParseIP(f.Route.Gateway)
	family := netlink.FAMILY_V4
	if gw.To4() == nil {
		family = netlink.FAMILY_V6
	}
	neighs, err := hostnet.RetryDump(func() ([]netlink.Neigh, error) { return netlink.NeighList(f.Index, family) })
	if err != nil {
		return ""
	}
	for _, n := range neighs {
		if n.IP.Equal(gw) && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// ResolveNetworkKey is NetworkKey, after making the kernel resolve the
// gateway's MAC when its neighbour table has none: one UDP datagram to the
// gateway's discard port (9), then the table is read again until ctx ends
// or 2 s passed. For remembering an outcome, not on a run's start path.
func ResolveNetworkKey(ctx context.Context, f Facts) string {
	if k := NetworkKey(f); k != "" || f.Route == nil || f.Route.Gateway == "" {
		return k
	}
	if c, err := net.Dial("udp", net.JoinHostPort(f.Route.Gateway, "9")); err == nil {
		_, _ = c.Write([]byte{0})
		c.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-tick.C:
			if k := NetworkKey(f); k != "" {
				return k
			}
		}
	}
}
