package doctor

import (
	"runtime"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/netsetup/internal/detect"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/nat"
)

// Probe says whether a kernel feature works: Known is false when vmrun
// could not find out (no privilege to create a throwaway namespace).
type Probe struct {
	Known bool  `json:"known"`
	OK    bool  `json:"ok"`
	Err   error `json:"-"`
}

// KernelProbes are the link kinds and nftables, each tried for real in a
// throwaway network namespace (nothing is left: the namespace dies with
// its thread).
type KernelProbes struct {
	Tun, Bridge, Macvtap, IPVtap, Nftables Probe
}

// ProbeKernel creates a tap, a bridge, a macvtap, an ipvtap and an
// nftables table in a fresh network namespace. Without the privilege to
// create one, every probe is unknown.
func ProbeKernel() KernelProbes {
	var k KernelProbes
	// On the main thread, a thread left in the probe's namespace would
	// wedge there for good: inThrowawayNetns returns it first.
	err := hostnet.InThrowawayNetns(func(h *netlink.Handle) error {
		result := func(err error) Probe { return Probe{Known: true, OK: err == nil, Err: err} }
		la := netlink.NewLinkAttrs()
		la.Name = "probetap"
		tap := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI, NonPersist: true}
		k.Tun = result(h.LinkAdd(tap))
		_ = hostnet.CloseFiles(tap.Fds)
		lb := netlink.NewLinkAttrs()
		lb.Name = "probebr"
		k.Bridge = result(h.LinkAdd(&netlink.Bridge{LinkAttrs: lb}))
		mv, iv := detect.LinkTypesIn(h)
		k.Macvtap, k.IPVtap = Probe{Known: true, OK: mv}, Probe{Known: true, OK: iv}
		k.Nftables = result(probeNftables())
		return nil
	})
	if err != nil {
		e := Probe{Err: err}
		k = KernelProbes{Tun: e, Bridge: e, Macvtap: e, IPVtap: e, Nftables: e}
	}
	return k
}

// probeNftables creates (and deletes) a table with a NAT chain.
func probeNftables() error {
	nc, err := nftables.New()
	if err != nil {
		return err
	}
	t := nc.AddTable(&nftables.Table{Name: "vmrunprobe", Family: nftables.TableFamilyIPv4})
	nc.AddChain(&nftables.Chain{Name: "post", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	if err := nc.Flush(); err != nil {
		return err
	}
	nc.DelTable(t)
	return nc.Flush()
}

// ForwardBlockers returns, in nft terms, the base chains of other tables
// that drop forwarded IPv4 packets by policy in the calling thread's
// namespace (see docs/nat.md), and the one-line notice NAT would print.
func ForwardBlockers() (chains []string, notice string, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer caps.RaiseAll()()
	return nat.Blockers()
}
