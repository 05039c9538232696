// Package detect reads the host once for netsetup.Detect: the interface
// that matters (named, or the one the default route leaves through), its
// kind (bridge, bridge port, Wi-Fi, Ethernet, other), its addresses and the
// links stacked on it, and the capabilities (the process's privileges and
// the kernel's features). It changes nothing on the host. The Facts it
// returns are the root's (netsetup.Facts is an alias).
package detect

import (
	"errors"
	"fmt"
	"net"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Route lookup targets: public anycast addresses, used only to ask the
// kernel which route it would take (RTM_GETROUTE sends nothing).
const (
	probeV4 = "1.1.1.1"
	probeV6 = "2606:4700::1111"
)

// errNoRoute is what a kernel returns when it has no usable route to a
// destination (ENETUNREACH and friends).
var errNoRoute = errors.New("no route")

// kernel is the narrow set of queries detection makes. linuxKernel asks
// the real kernel; tests use a fake.
type kernel interface {
	// routeGet looks up the route to dst, honouring policy routing; it
	// returns errNoRoute when there is none.
	routeGet(dst net.IP) ([]routeInfo, error)
	// linkByName and linkByIndex return ErrNoInterface for a missing link.
	linkByName(name string) (linkInfo, error)
	linkByIndex(index int) (linkInfo, error)
	// wireless returns nl80211's view of the interface, or nil when it is
	// not a Wi-Fi interface (or the kernel has no nl80211 at all).
	wireless(index int) (*Wireless, error)
	// uppers lists the macvlan, macvtap, ipvlan and ipvtap links whose
	// parent is interface index.
	uppers(index int) ([]UpperLink, error)
	// caps probes the host's capabilities.
	caps() Caps
	// cpus returns the number of CPUs.
	cpus() int
}

// linkInfo is the part of a link detection needs.
type linkInfo struct {
	Name        string
	Index       int
	Type        string // kernel link kind: "bridge", "veth", "device", ...
	Encap       string // "ether", "loopback", "none", ...
	Up          bool
	Oper        string
	MTU         int
	MAC         net.HardwareAddr
	MasterIndex int
}

// routeInfo is one route returned by a lookup: a single next hop
// (LinkIndex) or several (Nexthops, multipath).
type routeInfo struct {
	LinkIndex int
	Gateway   net.IP
	Nexthops  []nexthop
}

// nexthop is one path of a multipath route.
type nexthop struct {
	LinkIndex int
	Gateway   net.IP
	Dead      bool // RTNH_F_DEAD or RTNH_F_LINKDOWN
}

// detect finds the interface that matters (name, or the default-route
// interface when name is empty) and describes it.
func detect(k kernel, name string) (Facts, error) {
	f := Facts{Uplink: name, Named: name != "", Kind: UplinkNone, CPUs: k.cpus(), Caps: k.caps()}
	var l linkInfo
	var err error
	if name != "" {
		l, err = k.linkByName(name)
	} else {
		l, f.Route, err = defaultUplink(k)
	}
	switch {
	case errors.Is(err, hostnet.ErrNoInterface) && name != "", errors.Is(err, errNoRoute):
		return f, nil
	case err != nil:
		return Facts{}, err
	}
	return classify(k, f, l)
}

// defaultUplink returns the interface the kernel would route public
// traffic through: IPv4 first, IPv6 when there is no IPv4 route.
func defaultUplink(k kernel) (linkInfo, *Route, error) {
	for _, t := range []struct{ dst, family string }{{probeV4, "inet"}, {probeV6, "inet6"}} {
		routes, err := k.routeGet(net.ParseIP(t.dst))
		if errors.Is(err, errNoRoute) {
			continue
		}
		if err != nil {
			return linkInfo{}, nil, fmt.Errorf("route lookup for %s: %w", t.dst, err)
		}
		l, gw, ok, err := usableHop(k, routes)
		if err != nil {
			return linkInfo{}, nil, err
		}
		if ok {
			return l, &Route{Family: t.family, Gateway: ipString(gw)}, nil
		}
	}
	return linkInfo{}, nil, errNoRoute
}

// usableHop returns the link of the first next hop that is alive, up and
// not loopback (a multipath route yields its first usable path).
func usableHop(k kernel, routes []routeInfo) (linkInfo, net.IP, bool, error) {
	for _, r := range routes {
		hops := r.Nexthops
		if r.LinkIndex != 0 {
			hops = append([]nexthop{{LinkIndex: r.LinkIndex, Gateway: r.Gateway}}, hops...)
		}
		for _, h := range hops {
			if h.Dead || h.LinkIndex == 0 {
				continue
			}
			l, err := k.linkByIndex(h.LinkIndex)
			if errors.Is(err, hostnet.ErrNoInterface) {
				continue
			}
			if err != nil {
				return linkInfo{}, nil, false, err
			}
			if l.Up && l.Encap != "loopback" {
				return l, h.Gateway, true, nil
			}
		}
	}
	return linkInfo{}, nil, false, nil
}

// classify fills f from link l: bridge, bridge port, Wi-Fi, Ethernet or other.
func classify(k kernel, f Facts, l linkInfo) (Facts, error) {
	f.Uplink, f.Exists, f.Index, f.LinkType = l.Name, true, l.Index, l.Type
	f.Up, f.OperState, f.MTU, f.MAC = l.Up, l.Oper, l.MTU, l.MAC
	if l.Type == "bridge" {
		f.Kind = UplinkBridge
		return f, nil
	}
	if l.MasterIndex != 0 {
		m, err := k.linkByIndex(l.MasterIndex)
		if err != nil && !errors.Is(err, hostnet.ErrNoInterface) {
			return Facts{}, fmt.Errorf("master of %s: %w", l.Name, err)
		}
		if err == nil && m.Type == "bridge" {
			f.Kind, f.Master, f.MasterUp, f.MasterMTU = UplinkBridgePort, m.Name, m.Up, m.MTU
			return f, nil
		}
	}
	w, err := k.wireless(l.Index)
	if err != nil {
		return Facts{}, fmt.Errorf("wireless state of %s: %w", l.Name, err)
	}
	switch {
	case w != nil:
		f.Kind, f.Wireless = UplinkWireless, w
	case l.Encap == "ether":
		f.Kind = UplinkEthernet
	default:
		f.Kind = UplinkOther
		return f, nil
	}
	if f.Uppers, err = k.uppers(l.Index); err != nil {
		return Facts{}, fmt.Errorf("links on %s: %w", l.Name, err)
	}
	return f, nil
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
