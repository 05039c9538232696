// Package nat is --net nat: the guest sits on vmrun's private bridge
// behind this host's address. Every NAT VM of a network namespace shares
// one NAT network (the bridge, vmrun's nftables table, IPv4 forwarding),
// whichever vmrun runs it; its state lives under the runtime root
// (StateDir), and the last VM to leave removes it.
package nat

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
	// Bridge is the bridge every NAT guest's tap joins.
	Bridge = "vmrnat0"
	// bridgeAlias is the alias vmrun puts on the NAT bridge. It is not of the
	// "vmrun:VM" form of a VM's own links: the bridge belongs to no one VM.
	bridgeAlias = "vmrun-nat"
	// tableName is vmrun's nftables table (family ip).
	tableName = "vmrun"
	// defaultResolvConf is where the DNS forwarder finds the host's resolvers.
	defaultResolvConf = "/etc/resolv.conf"
)

// bridgeMAC is the NAT bridge's fixed MAC (locally administered); see
// BridgeMAC.
var bridgeMAC = [6]byte{0x02, 0x76, 0x6d, 0x72, 0x6e, 0x30}

// BridgeMAC returns the NAT bridge's fixed MAC, a new copy each call. A
// bridge whose MAC is not set takes the lowest MAC of its ports, so it
// would change whenever a VM's tap comes or goes, and the other guests
// would lose their gateway until their ARP entry expired.
func BridgeMAC() net.HardwareAddr { return append(net.HardwareAddr(nil), bridgeMAC[:]...) }

// candidates are the subnets vmrun tries, in order, when --nat-subnet is
// not given: 10.201.0.0/24 … 10.254.0.0/24, then 172.16.201.0/24 …
// 172.31.201.0/24 — away from the usual home routers, Docker (172.17/16),
// Podman (10.88/16) and libvirt (192.168.122/24).
func candidates() []netip.Prefix {
	var c []netip.Prefix
	for b := 201; b <= 254; b++ {
		c = append(c, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), 0, 0}), 24))
	}
	for b := 16; b <= 31; b++ {
		c = append(c, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(b), 201, 0}), 24))
	}
	return c
}

// chooseSubnet returns the first candidate that overlaps no prefix in
// used (the host's routes and addresses). Default routes (/0) overlap
// everything and are ignored.
func chooseSubnet(candidates, used []netip.Prefix) (netip.Prefix, error) {
	for _, c := range candidates {
		if !overlapsAny(c, used) {
			return c, nil
		}
	}
	return netip.Prefix{}, hostnet.Refuse(hostnet.ErrNoSubnet, "every candidate NAT subnet overlaps a route or address of this host; choose one with --nat-subnet CIDR")
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Bits() > 0 && u.Overlaps(p) {
			return true
		}
	}
	return false
}

// ParseSubnet parses --nat-subnet: an IPv4 prefix from /8 to /29 (room
// for the gateway and a few guests), given by its network address.
func ParseSubnet(s string) (netip.Prefix, error) {
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
			return hostnet.Refuse(hostnet.ErrBadRequest, "--nat-subnet %s overlaps %s, which this host already routes or uses; choose another subnet, or leave --nat-subnet out to let vmrun pick one", p, u)
		}
	}
	return nil
}

// gateway is the host's address on the NAT bridge: the subnet's first
// address. It is the guests' gateway and DNS server.
func gateway(subnet netip.Prefix) netip.Addr { return subnet.Addr().Next() }

// allocateIP picks VM vm's address in subnet: a position derived from the
// name (so a VM usually gets the same address every run), then the next
// free one. Guests get the addresses after the gateway, up to the last
// before the broadcast address; taken reports addresses in use.
func allocateIP(subnet netip.Prefix, vm string, taken func(netip.Addr) bool) (netip.Addr, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return netip.Addr{}, fmt.Errorf("%w: %s has no room for guests", hostnet.ErrSubnetFull, subnet)
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
	return netip.Addr{}, hostnet.Refuse(hostnet.ErrSubnetFull, "all %d guest addresses of the NAT subnet %s are in use; stop a NAT VM or choose a larger --nat-subnet", n, subnet)
}
