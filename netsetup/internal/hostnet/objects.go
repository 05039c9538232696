package hostnet

import (
	"net"
	"strconv"

	"github.com/vmrun/vmrun/internal/rundir"
)

// Kinds of recorded objects (rundir.Object.Kind). Undo knows how to remove
// or restore each; later modes add theirs here and in undoObject.
const (
	// ObjLink is a network link vmrun created. Name: link name; Detail
	// "type": the netlink link type, "alias": the ownership alias it
	// carries, "mac": the MAC it is created with (when known).
	ObjLink = "link"
	// ObjSysctl is a sysctl vmrun changed. Name: the path under /proc/sys
	// (e.g. "net/ipv4/conf/wlan0/forwarding"); Old: the value to restore.
	ObjSysctl = "sysctl"
	// ObjProcess is a helper process vmrun started (passt, ...). Name: the
	// pid; Detail "match": a string its /proc/PID/cmdline must contain for
	// cleanup to kill it.
	ObjProcess = "process"
	// ObjRoute is a route vmrun added. Name: the destination prefix;
	// Detail "dev": the output link, "src": the preferred source (if any).
	ObjRoute = "route"
	// ObjNeigh is a neighbour entry vmrun added. Name: the IP address;
	// Detail "dev": the link, "proxy": "1" for a proxy ARP/NDP entry.
	ObjNeigh = "neigh"
	// ObjAddr is an address vmrun added. Name: ADDR/PREFIX; Detail "dev".
	ObjAddr = "addr"
	// ObjNftTable is an nftables table vmrun created (NAT mode). Name: the
	// table; Detail "family": "ip" or "inet".
	ObjNftTable = "nft-table"
	// ObjNATMember is a VM's membership of the shared NAT network. Name:
	// the VM; Detail "dir": the NAT state directory. Undoing it releases
	// the VM's address and forwards, and removes the NAT network (bridge,
	// table, sysctls) when it was the last member.
	ObjNATMember = "nat-member"
)

// NATMemberObject is the record of VM vm's membership of the NAT network
// whose state is in dir.
func NATMemberObject(vm, dir string) rundir.Object {
	return rundir.Object{Kind: ObjNATMember, Name: vm, Detail: map[string]string{"dir": dir}}
}

// RouteObject is the record of a route to dst through link dev.
func RouteObject(dst *net.IPNet, dev string) rundir.Object {
	return rundir.Object{Kind: ObjRoute, Name: dst.String(), Detail: map[string]string{"dev": dev}}
}

// NeighObject is the record of a neighbour entry for ip on link dev; proxy
// marks a proxy ARP/NDP entry (NTF_PROXY).
func NeighObject(ip net.IP, dev string, proxy bool) rundir.Object {
	d := map[string]string{"dev": dev}
	if proxy {
		d["proxy"] = "1"
	}
	return rundir.Object{Kind: ObjNeigh, Name: ip.String(), Detail: d}
}

// AddrObject is the record of address addr (with its prefix) on link dev.
func AddrObject(addr *net.IPNet, dev string) rundir.Object {
	return rundir.Object{Kind: ObjAddr, Name: addr.String(), Detail: map[string]string{"dev": dev}}
}

// LinkObject is the record of link name (of netlink type linkType, e.g.
// "macvtap", "tuntap") owned by VM vm, created with MAC mac (nil when the
// kernel chooses it).
func LinkObject(vm, name, linkType string, mac net.HardwareAddr) rundir.Object {
	d := map[string]string{"type": linkType, "alias": OwnerAlias(vm)}
	if len(mac) > 0 {
		d["mac"] = mac.String()
	}
	return rundir.Object{Kind: ObjLink, Name: name, Detail: d}
}

// SysctlObject is the record of a sysctl (path under /proc/sys) whose
// previous value was old.
func SysctlObject(path, old string) rundir.Object {
	return rundir.Object{Kind: ObjSysctl, Name: path, Old: old}
}

// OwnerAlias is the IFLA_IFALIAS vmrun puts on every link it creates for VM
// vm; cleanup deletes only links that carry it.
func OwnerAlias(vm string) string { return "vmrun:" + vm }

// ProcessObject is the record of helper process pid; cleanup kills it only
// while its command line contains match (e.g. the VM's runtime directory).
func ProcessObject(pid int, match string) rundir.Object {
	return rundir.Object{Kind: ObjProcess, Name: strconv.Itoa(pid), Detail: map[string]string{"match": match}}
}
