package netsetup

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/nat"
)

// NATBridge is the bridge every NAT guest's tap joins (package nat has
// the rest of --net nat).
const NATBridge = nat.Bridge

// NATOptions configure --net nat.
type NATOptions struct {
	// Subnet is --nat-subnet; "" lets vmrun pick one no route or address
	// on the host overlaps. VMs joining an existing NAT network must ask
	// for its subnet or none.
	Subnet string `json:"subnet"`
	// ResolvConf is the resolv.conf whose name servers the guests' DNS
	// forwarder asks; "" means /etc/resolv.conf.
	ResolvConf string `json:"resolv_conf"`
}

// natChoice handles --net nat.
func natChoice(f Facts) (choice, error) {
	if err := needCaps(f.Caps, NAT); err != nil {
		return choice{}, err
	}
	if !f.Caps.Tun {
		return choice{}, refuseTun("nat", f.Caps)
	}
	c := choice{mode: NAT, parent: NATBridge, mtu: 1500,
		reason: fmt.Sprintf("NAT, as asked (--net nat): the guest sits on vmrun's private bridge %s behind this host's address; other NAT guests and this host reach it, the LAN only through --forward ports", NATBridge)}
	if f.Kind == UplinkNone {
		c.notice = "there is no default route: NAT guests reach this host and each other, but nothing beyond"
	}
	return c, nil
}

// checkNATForwards refuses forwards NAT cannot honour: it forwards IPv4
// only, and one host port can go to one guest only.
func checkNATForwards(fws []Forward) error {
	seen := map[string]bool{}
	for _, fw := range fws {
		if ip := net.ParseIP(fw.HostAddr); fw.HostAddr != "" && (ip == nil || ip.To4() == nil) {
			return hostnet.Refuse(ErrBadRequest, "--forward %s: --net nat forwards IPv4 only; use an IPv4 host address or none", fw)
		}
		key := fmt.Sprintf("%s/%d", fw.Proto, fw.HostPort)
		if seen[key] {
			return hostnet.Refuse(ErrBadRequest, "--forward: host port %s/%d is forwarded twice; forward each host port once", fw.Proto, fw.HostPort)
		}
		seen[key] = true
	}
	return nil
}

// ParseNATSubnet parses --nat-subnet: an IPv4 prefix from /8 to /29 (room
// for the gateway and a few guests), given by its network address.
func ParseNATSubnet(s string) (netip.Prefix, error) { return nat.ParseSubnet(s) }
