package detect

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// Host describes interface name — the interface of the default route when
// name is "" — and probes the host's capabilities once; probeLinks also
// finds out which link types the kernel can create (Caps.Macvtap,
// Caps.IPVtap): from the file cache when it holds the answer for this boot
// and these loaded modules (see linkcache_linux.go), else by a probe in a
// throwaway namespace (a few milliseconds), whose answer it keeps there
// ("" for cache: always probe). It works in the network namespace of the
// calling thread and changes nothing there. A named interface that does
// not exist is not an error: the Facts say so.
func Host(name string, probeLinks bool, cache string) (Facts, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Asking whether the kernel knows a link kind (kindKnown) is a link
	// request; nothing else here needs a capability.
	defer caps.Raise(caps.NetAdmin)()
	h, err := hostnet.NewHandle()
	if err != nil {
		return Facts{}, err
	}
	defer h.Close()
	f, err := detect(linuxKernel{h: h, probeLinks: probeLinks, cache: cache}, name)
	if err == nil && f.Exists {
		f.Addrs, err = globalAddrs(h, f.Index)
	}
	return f, err
}

// linuxKernel answers detection's queries from the running kernel.
type linuxKernel struct {
	h *netlink.Handle
	// probeLinks: probe macvtap/ipvtap creation (Caps.Macvtap, Caps.IPVtap).
	probeLinks bool
	// cache is the file keeping the probe's answer per boot ("": none).
	cache string
}

func (k linuxKernel) routeGet(dst net.IP) ([]routeInfo, error) {
	rs, err := k.h.RouteGet(dst)
	if noRoute(err) {
		return nil, errNoRoute
	}
	if err != nil {
		return nil, err
	}
	out := make([]routeInfo, 0, len(rs))
	for _, r := range rs {
		ri := routeInfo{LinkIndex: r.LinkIndex, Gateway: r.Gw}
		for _, nh := range r.MultiPath {
			dead := nh.Flags&(unix.RTNH_F_DEAD|unix.RTNH_F_LINKDOWN) != 0
			ri.Nexthops = append(ri.Nexthops, nexthop{LinkIndex: nh.LinkIndex, Gateway: nh.Gw, Dead: dead})
		}
		out = append(out, ri)
	}
	return out, nil
}

// noRoute reports whether a route lookup error means "no usable route":
// unreachable, prohibited, blackholed, or the address family is disabled.
func noRoute(err error) bool {
	for _, e := range []error{unix.ENETUNREACH, unix.EHOSTUNREACH, unix.EACCES, unix.EINVAL, unix.EAFNOSUPPORT, unix.ESRCH} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (k linuxKernel) linkByName(name string) (linkInfo, error) {
	l, err := k.h.LinkByName(name)
	return k.link(fmt.Sprintf("link %q", name), l, err)
}

func (k linuxKernel) linkByIndex(index int) (linkInfo, error) {
	l, err := k.h.LinkByIndex(index)
	return k.link(fmt.Sprintf("link #%d", index), l, err)
}

func (linuxKernel) link(what string, l netlink.Link, err error) (linkInfo, error) {
	if hostnet.IsNotFound(err) {
		return linkInfo{}, fmt.Errorf("%s: %w", what, hostnet.ErrNoInterface)
	}
	if err != nil {
		return linkInfo{}, fmt.Errorf("%s: %w", what, err)
	}
	return linkInfoOf(l), nil
}

func (linuxKernel) wireless(index int) (*Wireless, error) { return wirelessOf(index) }

func (k linuxKernel) uppers(index int) ([]UpperLink, error) {
	links, err := hostnet.RetryDump(k.h.LinkList)
	if err != nil {
		return nil, err
	}
	return hostnet.UppersOf(links, index), nil
}

func (linuxKernel) cpus() int { return runtime.NumCPU() }

func (k linuxKernel) caps() Caps {
	c := ProcessCaps()
	c.Tun, c.VhostNet = canOpen("/dev/net/tun"), canOpen("/dev/vhost-net")
	c.TunDenied = !c.Tun && denied("/dev/net/tun")
	if k.probeLinks {
		c.Macvtap, c.IPVtap = linkTypes(k.cache)
	}
	c.Passt = passtPath()
	return c
}

// ProcessCaps are the process's privileges: the capabilities it has
// effective or permitted (see internal/caps).
func ProcessCaps() Caps {
	return Caps{
		NetAdmin: caps.Usable(caps.NetAdmin),
		SysAdmin: caps.Usable(unix.CAP_SYS_ADMIN),
		NetRaw:   caps.Usable(caps.NetRaw),
		Mknod:    caps.Usable(caps.Mknod),
	}
}

// canOpen reports whether a device node opens read-write (opening
// /dev/net/tun or /dev/vhost-net creates nothing until configured).
func canOpen(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// denied reports whether a device node exists but opening it read-write
// is refused for permissions.
func denied(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return false
	}
	return errors.Is(err, fs.ErrPermission)
}

// linkTypes is whether this kernel can create macvtap and ipvtap links:
// the answer cache keeps for this boot and these modules, or a probe's,
// kept in cache when no module was loaded or unloaded while it ran (the
// probe's own module loads included: the next start keeps it then).
func linkTypes(cache string) (macvtap, ipvtap bool) {
	key, keyed := currentLinkCacheKey()
	if keyed {
		if mv, iv, ok := readLinkCache(cache, key); ok {
			return mv, iv
		}
	}
	macvtap, ipvtap, full := probeLinkTypes()
	if after, ok := currentLinkCacheKey(); cache != "" && full && keyed && ok && after == key {
		_ = writeLinkCache(cache, key, macvtap, ipvtap) // a cache: a failure costs the next start a probe
	}
	return macvtap, ipvtap
}

// probeLinkTypes finds out whether this kernel can create macvtap and
// ipvtap links by creating them: in a throwaway network namespace on a
// thread that goes back to vmrun's namespace and exits afterwards (the
// namespace, a veth pair as parents and the probes vanish with it).
// Without CAP_SYS_ADMIN for that namespace it asks the kernel in the
// current namespace with a request that cannot create anything (see
// kindKnown); full is false then.
func probeLinkTypes() (macvtap, ipvtap, full bool) {
	err := hostnet.InThrowawayNetns(func(h *netlink.Handle) error {
		macvtap, ipvtap = LinkTypesIn(h)
		return nil
	})
	if err != nil {
		return kindKnown(&netlink.Macvtap{}), kindKnown(&netlink.IPVtap{}), false
	}
	return macvtap, ipvtap, true
}

// LinkTypesIn reports whether macvtap and ipvtap links can be created in
// the fresh network namespace of h, by creating them on a veth pair there;
// what it creates is left for the namespace to take away.
func LinkTypesIn(h *netlink.Handle) (macvtap, ipvtap bool) {
	la := netlink.NewLinkAttrs()
	la.Name = "probe0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "probe1"}); err != nil {
		return false, false
	}
	a, errA := h.LinkByName("probe0")
	b, errB := h.LinkByName("probe1")
	if errA != nil || errB != nil {
		return false, false
	}
	mv := netlink.NewLinkAttrs()
	mv.Name, mv.ParentIndex = "probemv", a.Attrs().Index
	macvtap = h.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: mv, Mode: netlink.MACVLAN_MODE_BRIDGE}}) == nil
	iv := netlink.NewLinkAttrs()
	iv.Name, iv.ParentIndex = "probeiv", b.Attrs().Index
	ipvtap = h.LinkAdd(&netlink.IPVtap{IPVlan: netlink.IPVlan{LinkAttrs: iv, Mode: netlink.IPVLAN_MODE_L2, Flag: netlink.IPVLAN_FLAG_BRIDGE}}) == nil
	return macvtap, ipvtap
}

// kindKnown asks whether the kernel knows a link kind with an RTM_NEWLINK
// that has no parent: a known macvtap/ipvtap kind refuses it with EINVAL
// before registering anything, an unknown kind gives EOPNOTSUPP.
func kindKnown(l netlink.Link) bool {
	la := netlink.NewLinkAttrs()
	la.Name = "vmrprobe"
	switch l := l.(type) {
	case *netlink.Macvtap:
		l.LinkAttrs = la
	case *netlink.IPVtap:
		l.LinkAttrs = la
	}
	h, err := hostnet.NewHandle()
	if err != nil {
		return false
	}
	defer h.Close()
	err = h.LinkAdd(l)
	if err == nil { // should not happen; do not leave it behind
		_ = h.LinkDel(l)
		return true
	}
	return errors.Is(err, unix.EINVAL)
}

// linkInfoOf converts a netlink link.
func linkInfoOf(l netlink.Link) linkInfo {
	a := l.Attrs()
	return linkInfo{
		Name: a.Name, Index: a.Index, Type: l.Type(), Encap: a.EncapType,
		Up: a.Flags&net.FlagUp != 0, Oper: a.OperState.String(), MTU: a.MTU,
		MAC: a.HardwareAddr, MasterIndex: a.MasterIndex,
	}
}

// EnvPasst names the environment variable that chooses the passt binary
// for user mode: a path, or "off" for QEMU's slirp even when passt is
// installed. Unset: passt from PATH.
const EnvPasst = "VMRUN_PASST"

// passtPath returns the passt binary user mode would run ("" for none).
func passtPath() string {
	switch v := os.Getenv(EnvPasst); v {
	case "off", "none":
		return ""
	case "":
		p, _ := exec.LookPath("passt")
		return p
	default:
		p, _ := exec.LookPath(v)
		return p
	}
}
