// Package nicqmp is what the launcher says to QEMU's QMP to plug a NIC in
// live: the ids of the NIC, its netdev and its PCIe root port, which
// backends can be added over QMP, and the arguments of netdev_add and
// device_add for them. It is pure: no QMP connection, no fds.
package nicqmp

import (
	"net"
	"strconv"
	"strings"

	"github.com/vmrun/vmrun/qmp"
)

// HotplugPorts is how many PCIe root ports a NIC with Hotplug gets: its
// own and one free for its replacement; replacements alternate.
const HotplugPorts = 2

// PortID, NICID and NetdevID are the ids of NIC number n's root port,
// device and netdev.
func PortID(n int) string   { return "vmrun-rp" + strconv.Itoa(n%HotplugPorts) }
func NICID(n int) string    { return "nic" + strconv.Itoa(n) }
func NetdevID(n int) string { return "net" + strconv.Itoa(n) }

// Swappable says whether a backend can be added over QMP — a tap on its
// fds (files of them, no extra options) or QEMU's user mode (slirp; its
// hostfwd options). Not a stream backend (passt's socket): QEMU 7.2
// accepts netdev_add of one on a socket passed with getfd, and the guest
// sees its new NIC, but in TestSwapNICRealGuest's try no frame passed
// either way (an ARP request for the guest's address, answered on a tap,
// not here) — so a guest is not moved onto one.
func Swappable(backend string, options []string, files, vhostFiles int) bool {
	switch backend {
	case "tap":
		return files > 0 && len(options) == 0
	case "user":
		for _, o := range options {
			if !strings.HasPrefix(o, "hostfwd=") {
				return false
			}
		}
		return files == 0 && vhostFiles == 0
	}
	return false
}

// DeviceArgs are device_add's arguments for NIC number n: a virtio-net
// device on its root port, with mac, mtu (0: the default) and queues tap
// queues.
func DeviceArgs(n int, mac net.HardwareAddr, mtu, queues int) qmp.Args {
	a := qmp.Args{"driver": "virtio-net-pci", "id": NICID(n), "netdev": NetdevID(n),
		"bus": PortID(n), "mac": mac.String(), "romfile": ""}
	if mtu > 0 && mtu != 1500 {
		a["host_mtu"] = mtu
	}
	if queues > 1 {
		a["mq"] = true
		a["vectors"] = 2*queues + 2
	}
	return a
}

// BackendArgs are netdev_add's arguments for a backend (Swappable) as
// netdev id, with its options; a tap's fds passed as names (and vhost-net
// fds as vnames).
func BackendArgs(id, backend string, options, names, vnames []string) qmp.Args {
	switch backend {
	case "user":
		a := qmp.Args{"type": "user", "id": id}
		var fw []qmp.Args
		for _, o := range options {
			fw = append(fw, qmp.Args{"str": strings.TrimPrefix(o, "hostfwd=")})
		}
		if len(fw) > 0 {
			a["hostfwd"] = fw
		}
		return a
	}
	return tapArgs(id, names, vnames)
}

// tapArgs are netdev_add's arguments for a tap backend on the fds passed
// as names (and vhost-net fds as vnames).
func tapArgs(id string, names, vnames []string) qmp.Args {
	a := qmp.Args{"type": "tap", "id": id}
	if len(names) == 1 {
		a["fd"] = names[0]
	} else {
		a["fds"] = strings.Join(names, ":")
	}
	a["vhost"] = len(vnames) > 0
	switch {
	case len(vnames) == 1:
		a["vhostfd"] = vnames[0]
	case len(vnames) > 1:
		a["vhostfds"] = strings.Join(vnames, ":")
	}
	return a
}
