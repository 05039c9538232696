// Package ipvtap is --net ipvtap (DESIGN.md, "ipvtap on Wi-Fi", points 1-10):
//
//   - The guest's ipvtap (L2, bridge flag) lives in a private network
//     namespace that vmrun creates (a thread of the set-up's unshares and
//     makes the namespace's sockets beside the set-up's other steps:
//     hostnet.Thread) and holds by an fd for the VM's life. There
//     the guest's addresses can be put on the ipvtap — which is what fills
//     ipvlan's receive demux — without the host treating them as its own. The ipvtap is created
//     right there: one RTM_NEWLINK from vmrun's namespace names the parent
//     there and the private namespace as the new link's (IFLA_NET_NS_FD),
//     so it never exists in vmrun's namespace and its character device is
//     registered once, in the private namespace's sysfs (moving a link
//     re-registers it). When vmrun dies the namespace dies, and the kernel
//     deletes the ipvtap in it: nothing to garbage-collect, so neither is
//     recorded (no bind mount, no name). The queue fds are opened from
//     vmrun's namespace, so QEMU's fds do not keep the private one alive.
//   - The guest NIC's MAC is the parent's: ipvlan does not rewrite source
//     MACs, and a Wi-Fi access point drops frames from unknown MACs.
//   - vmrun owns the guest's DHCP: a tc filter on the ipvtap's egress takes
//     the guest's DHCP client messages to vmrun's DHCP port (the private
//     namespace's loopback, where vmrun reads them from a packet socket)
//     before ipvlan could send them out; vmrun answers them on the
//     ipvtap with a lease it holds from the LAN's server with the VM's
//     own client identifier (docs/wifi.md).
//   - The guest's addresses are registered on the ipvtap: the leased one
//     and --guest-ip at once, others as a learner sees them in what the
//     guest sends (an AF_PACKET socket on the ipvtap; see
//     netsetup/internal/learn).
//   - A watcher follows the parent (MAC changes, link down/up, another
//     ipvlan link switching the port's mode) and tells the user.
//   - Unless --no-host-link, a host-side ipvlan "shim" on the parent, a /32
//     route and a permanent neighbour entry per guest IPv4 address, and
//     rp_filter loose on the parent let the host reach the guest.
//
// Recorded for a crashed vmrun's clean-up: the shim, its routes and
// neighbour entries, and the rp_filter value — all of kinds the root's Undo
// and GC undo with hostnet's helpers (a link, a route, a neighbour entry, a
// sysctl), so this package exports no undo of its own.
//
// The files follow the roles: attach_linux.go (the steps and the ipvtap in
// its private namespace), dhcpport_linux.go (the DHCP port and its tc
// filters), dhcpproxy_linux.go (the upstream lease and the answers to the
// guest), shim_linux.go (the host side), registry_linux.go (the guest's
// registered addresses), learner_linux.go (the learner) and
// watcher_linux.go (the watcher of the parent).
package ipvtap
