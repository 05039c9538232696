package netsetup

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// The host objects --net nat shares among all NAT VMs of a network namespace.
const (
	// NATBridge is the bridge every NAT guest's tap joins.
	NATBridge = "vmrnat0"
	// NATAlias is the alias vmrun puts on the NAT bridge. It is not of the
	// "vmrun:VM" form of a VM's own links: the bridge belongs to no one VM.
	NATAlias = "vmrun-nat"
	// NATTable is vmrun's nftables table (family ip).
	NATTable = "vmrun"
	// DefaultResolvConf is where the DNS forwarder finds the host's resolvers.
	DefaultResolvConf = "/etc/resolv.conf"
)

// NATBridgeMAC is the NAT bridge's fixed MAC (locally administered). A
// bridge whose MAC is not set takes the lowest MAC of its ports, so it
// would change whenever a VM's tap comes or goes, and the other guests
// would lose their gateway until their ARP entry expired.
var NATBridgeMAC = net.HardwareAddr{0x02, 0x76, 0x6d, 0x72, 0x6e, 0x30}

// NATOptions configure --net nat.
type NATOptions struct {
	// Subnet is --nat-subnet; "" lets vmrun pick one no route or address
	// on the host overlaps. VMs joining an existing NAT network must ask
	// for its subnet or none.
	Subnet string `json:"subnet"`
	// ResolvConf is the resolv.conf whose name servers the guests' DNS
	// forwarder asks; "" means DefaultResolvConf.
	ResolvConf string `json:"resolv_conf"`
}

// natChoice handles --net nat.
func natChoice(f Facts) (choice, error) {
	if err := needCaps(f.Caps, NAT); err != nil {
		return choice{}, err
	}
	if !f.Caps.Tun {
		return choice{}, hostnet.Refuse(ErrNoKernelSupport, "--net nat needs /dev/net/tun, which cannot be opened; load the tun module or use --net user")
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

// NATCandidates are the subnets vmrun tries, in order, when --nat-subnet is
// not given: 10.201.0.0/24 … 10.254.0.0/24, then 172.16.201.0/24 …
// 172.31.201.0/24 — away from the usual home routers, Docker (172.17/16),
// Podman (10.88/16) and libvirt (192.168.122/24).
func NATCandidates() []netip.Prefix {
	var c []netip.Prefix
	for b := 201; b <= 254; b++ {
		c = append(c, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), 0, 0}), 24))
	}
	for b := 16; b <= 31; b++ {
		c = append(c, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(b), 201, 0}), 24))
	}
	return c
}

// ChooseSubnet returns the first candidate that overlaps no prefix in
// used (the host's routes and addresses). Default routes (/0) overlap
// everything and are ignored.
func ChooseSubnet(candidates, used []netip.Prefix) (netip.Prefix, error) {
	for _, c := range candidates {
		if !overlapsAny(c, used) {
			return c, nil
		}
	}
	return netip.Prefix{}, hostnet.Refuse(ErrNoSubnet, "every candidate NAT subnet overlaps a route or address of this host; choose one with --nat-subnet CIDR")
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Bits() > 0 && u.Overlaps(p) {
			return true
		}
	}
	return false
}

// ParseNATSubnet parses --nat-subnet: an IPv4 prefix from /8 to /29 (room
// for the gateway and a few guests), given by its network address.
func ParseNATSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("--nat-subnet %q is not a CIDR prefix; write e.g. 10.201.0.0/24", s)
	case !p.Addr().Is4():
		return netip.Prefix{}, fmt.Errorf("--nat-subnet %s: the NAT network is IPv4; give an IPv4 prefix, e.g. 10.201.0.0/24", s)
	case p.Bits() < 8 || p.Bits() > 29:
		return netip.Prefix{}, fmt.Errorf("--nat-subnet %s: use a prefix length from /8 to /29", s)
	case p.Masked() != p:
		return netip.Prefix{}, fmt.Errorf("--nat-subnet %s has host bits set; write its network address, %s", s, p.Masked())
	}
	return p, nil
}

// checkSubnet refuses a requested subnet that overlaps a prefix in use.
func checkSubnet(p netip.Prefix, used []netip.Prefix) error {
	for _, u := range used {
		if u.Bits() > 0 && u.Overlaps(p) {
			return hostnet.Refuse(ErrBadRequest, "--nat-subnet %s overlaps %s, which this host already routes or uses; choose another subnet, or leave --nat-subnet out to let vmrun pick one", p, u)
		}
	}
	return nil
}

// NATGateway is the host's address on the NAT bridge: the subnet's first
// address. It is the guests' gateway and DNS server.
func NATGateway(subnet netip.Prefix) netip.Addr { return subnet.Addr().Next() }

// AllocateIP picks VM vm's address in subnet: a position derived from the
// name (so a VM usually gets the same address every run), then the next
// free one. Guests get the addresses after the gateway, up to the last
// before the broadcast address; taken reports addresses in use.
func AllocateIP(subnet netip.Prefix, vm string, taken func(netip.Addr) bool) (netip.Addr, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return netip.Addr{}, fmt.Errorf("%w: %s has no room for guests", ErrSubnetFull, subnet)
	}
	base := subnet.Addr().As4()
	first := binary.BigEndian.Uint32(base[:]) + 2
	n := uint32(1)<<(32-subnet.Bits()) - 3 // minus network, gateway, broadcast
	h := sha256.Sum256([]byte("vmrun-nat:" + vm))
	start := binary.BigEndian.Uint32(h[:4]) % n
	for i := range n {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], first+(start+i)%n)
		if a := netip.AddrFrom4(b); !taken(a) {
			return a, nil
		}
	}
	return netip.Addr{}, hostnet.Refuse(ErrSubnetFull, "all %d guest addresses of the NAT subnet %s are in use; stop a NAT VM or choose a larger --nat-subnet", n, subnet)
}
