package netsetup

import (
	"net"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Kinds of recorded objects (rundir.Object.Kind); see hostnet for what
// each records. Undo dispatches on them.
const (
	ObjLink      = hostnet.ObjLink
	ObjSysctl    = hostnet.ObjSysctl
	ObjProcess   = hostnet.ObjProcess
	ObjRoute     = hostnet.ObjRoute
	ObjNeigh     = hostnet.ObjNeigh
	ObjAddr      = hostnet.ObjAddr
	ObjNftTable  = hostnet.ObjNftTable
	ObjNATMember = hostnet.ObjNATMember
)

// RouteObject is the record of a route to dst through link dev.
func RouteObject(dst *net.IPNet, dev string) rundir.Object { return hostnet.RouteObject(dst, dev) }

// NeighObject is the record of a neighbour entry for ip on link dev; proxy
// marks a proxy ARP/NDP entry (NTF_PROXY).
func NeighObject(ip net.IP, dev string, proxy bool) rundir.Object {
	return hostnet.NeighObject(ip, dev, proxy)
}

// AddrObject is the record of address addr (with its prefix) on link dev.
func AddrObject(addr *net.IPNet, dev string) rundir.Object { return hostnet.AddrObject(addr, dev) }

// LinkObject is the record of link name (of netlink type linkType) owned
// by VM vm, created with MAC mac (nil when the kernel chooses it).
func LinkObject(vm, name, linkType string, mac net.HardwareAddr) rundir.Object {
	return hostnet.LinkObject(vm, name, linkType, mac)
}

// SysctlObject is the record of a sysctl (path under /proc/sys) whose
// previous value was old.
func SysctlObject(path, old string) rundir.Object { return hostnet.SysctlObject(path, old) }

// ProcessObject is the record of helper process pid; cleanup kills it only
// while its command line contains match (e.g. the VM's runtime directory).
func ProcessObject(pid int, match string) rundir.Object { return hostnet.ProcessObject(pid, match) }
