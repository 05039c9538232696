package netsetup

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
	// ObjRoute, ObjNeigh, ObjAddr and ObjNftTable are reserved for the
	// routed, ipvtap and NAT modes; this build cannot undo them yet.
	ObjRoute    = "route"
	ObjNeigh    = "neigh"
	ObjAddr     = "addr"
	ObjNftTable = "nft-table"
)

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

// ProcessObject is the record of helper process pid; cleanup kills it only
// while its command line contains match (e.g. the VM's runtime directory).
func ProcessObject(pid int, match string) rundir.Object {
	return rundir.Object{Kind: ObjProcess, Name: strconv.Itoa(pid), Detail: map[string]string{"match": match}}
}
