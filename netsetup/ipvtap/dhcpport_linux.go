package ipvtap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The guest's DHCP port (docs/wifi.md, "How vmrun answers the guest's
// DHCP"): in the private namespace, its loopback, on which vmrun holds a
// packet socket, and a root qdisc on the ipvtap whose filters see every
// frame the guest writes (tap_get_user and tap_get_user_xdp end in
// dev_queue_xmit on the ipvtap) before ipvlan sends it out the parent or
// hands it to another slave. They redirect each DHCP client message to
// the loopback, where vmrun's socket sees it transmitted. (The loopback
// then receives it: the private namespace's own stack, which has no
// socket and forwards nothing, drops it.) vmrun sends its answers on the
// ipvtap itself, from a packet socket, with a source MAC of its own: the
// first filter turns such a frame back into the ipvtap's receive path,
// where tap_handle_frame queues it to the guest. No DHCP message of the
// guest reaches the LAN, and vmrun's answers reach the guest only. The
// loopback is there in every namespace: the port costs no device of its
// own. A root qdisc, unlike a clsact one, switches on no kernel static key
// (code patching on the set-up's path, slow under TCG); see addPortFilters.

// loIndex is the loopback's index, in every network namespace.
const loIndex = 1

// openPort brings the calling thread's namespace's loopback up (h is
// netlink there) and opens the DHCP port's socket on it: every frame the
// loopback transmits, in the copy the transmission shows (each frame is
// then received too, a second copy). In the private namespace only the
// filters' redirections are transmitted there; a frame the namespace's
// own stack sends is no DHCP client message, which vmrun ignores.
func openPort(h *netlink.Handle) (*packet.Conn, error) {
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: loIndex, Name: "lo"}}
	if err := h.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("bring the loopback up: %w", err)
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipFalse: 1},
		bpf.RetConstant{Val: 1 << 16},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, err
	}
	c, err := packet.Listen(&net.Interface{Index: loIndex, Name: "lo"}, packet.Raw, ethPAll, &packet.Config{Filter: prog})
	if err != nil {
		return nil, fmt.Errorf("a packet socket on the loopback: %w", err)
	}
	return c, nil
}

// makeDHCPPort completes the guest's DHCP port once the ipvtap exists:
// the ipvtap's qdisc and the filters, here, and the socket vmrun answers
// on, which the private thread opens meanwhile (openSockets) and this step
// waits for, with the port's own socket (startPrivate). Everything goes
// with the private namespace.
func (x *guest) makeDHCPPort(s *hostnet.Setup) error {
	qdisc, err := addPortFilters(x.nh, x.link.Attrs().Index, loIndex, x.guestMAC, "")
	if err != nil {
		return err
	}
	s.Trace.ReportEvent(fmt.Sprintf("the guest's DHCP port: filters on the ipvtap's %s qdisc", qdisc))
	err = errors.Join(<-x.ported, <-x.sockets)
	x.thread.Stop() // its work is done
	return err
}

// openAnswerSocket opens the packet socket vmrun sends its answers on,
// on link a (the ipvtap) of the calling thread's namespace. Its protocol
// is 0: it receives nothing.
func openAnswerSocket(a *netlink.LinkAttrs) (*packet.Conn, error) {
	c, err := packet.Listen(&net.Interface{Index: a.Index, Name: a.Name}, packet.Raw, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("a packet socket on %s: %w", a.Name, err)
	}
	return c, nil
}

// addPortFilters gives the ipvtap (ivIx) a qdisc and the filters, in one
// classifier (portFilter), their handles 1, 2, ... in this order: vmrun's
// answers back to the guest (answerFilter), the DHCP client messages to
// the port (stealFilters), neighbour discovery for the shared MAC's EUI-64
// addresses to the port (ndFilters), everything else on (passFilter). The qdisc is a root fq_codel (built into most
// distribution kernels; every frame no filter redirects ends in its flow
// 1, one FIFO; it would drop a frame no filter classifies, hence the last
// filter), or, on a kernel without it, a clsact qdisc, whose egress hook
// holds the same filters: it switches on the kernel's static keys for tc
// ingress and egress, which cost a TCG guest's set-up tens of ms. It
// returns the qdisc's kind. qdisc "clsact" asks for that one.
func addPortFilters(h *netlink.Handle, ivIx, portIx int, mac net.HardwareAddr, qdisc string) (string, error) {
	parent := rootQdisc
	var err error
	if qdisc != "clsact" {
		qdisc = "fq_codel"
		err = h.QdiscAdd(netlink.NewFqCodel(netlink.QdiscAttrs{LinkIndex: ivIx, Handle: rootQdisc, Parent: netlink.HANDLE_ROOT}))
	}
	if qdisc == "clsact" || errors.Is(err, unix.ENOENT) {
		qdisc, parent = "clsact", netlink.HANDLE_MIN_EGRESS
		err = h.QdiscAdd(&netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ivIx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}})
	}
	if err != nil {
		return qdisc, tcError("an fq_codel or clsact qdisc", err)
	}
	fs := append([]netlink.Filter{answerFilter(ivIx)}, stealFilters(ivIx, portIx)...)
	fs = append(append(fs, ndFilters(ivIx, portIx, mac)...), passFilter(ivIx))
	for i, fl := range fs {
		at := fl.Attrs()
		at.Parent, at.Handle = parent, uint32(i+1)
		if err := h.FilterAdd(fl); err != nil {
			return qdisc, tcError("a u32 filter with a mirred action", err)
		}
	}
	return qdisc, nil
}

// tcError explains a tc refusal: without these the guest's DHCP would
// reach the LAN with the host's MAC, so the attachment is refused.
func tcError(what string, err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return hostnet.Refuse(hostnet.ErrNoKernelSupport, "the kernel refused %s (%v), which vmrun needs to keep an ipvtap guest's DHCP off the LAN: load sch_fq_codel (or sch_ingress), cls_u32 and act_mirred (modprobe -a sch_fq_codel cls_u32 act_mirred), or use --net routed", what, err)
	}
	return fmt.Errorf("%s for the guest's DHCP: %w", what, err)
}

// The keys of the filters, at offsets from the IPv4 header (u32 reads
// from the network header, which tap_get_user sets after the Ethernet
// header, and after the VLAN tags of a tagged frame: the two bytes before
// it are the frame's innermost EtherType).
var (
	keyIPv4      = netlink.TcU32Key{Off: -4, Mask: 0x0000ffff, Val: unix.ETH_P_IP}   // the EtherType before the network header
	keyIPv6      = netlink.TcU32Key{Off: -4, Mask: 0x0000ffff, Val: unix.ETH_P_IPV6} // (ndFilters)
	keyUDP       = netlink.TcU32Key{Off: 8, Mask: 0x00ff0000, Val: 0x00110000}       // protocol 17
	keyIHL5      = netlink.TcU32Key{Off: 0, Mask: 0x0f000000, Val: 0x05000000}       // no IP options
	keyFirstFrag = netlink.TcU32Key{Off: 4, Mask: 0x00001fff, Val: 0}                // fragment offset 0
	keyToServer  = netlink.TcU32Key{Off: 20, Mask: 0x0000ffff, Val: 67}              // UDP destination port 67
)

// stealFilters are the ipvtap's egress filters for IPv4, untagged or
// under any VLAN tags (IPv4 is the EtherType before the network header;
// three filters of protocol "all" instead of three per tag protocol, each
// of which costs the set-up a netlink request): 1. UDP to port 67 (a
// whole datagram or its first fragment) goes to the DHCP port; 2. any
// other UDP without IP options passes; 3. UDP with IP options (where
// port 67 would be further on) goes to the DHCP port too, and vmrun drops
// it — no guest needs IP options in UDP, and a guest must not get a DHCP
// message past the filter with them.
func stealFilters(ivIx, portIx int) []netlink.Filter {
	return []netlink.Filter{
		u32(portFilter(ivIx), []netlink.TcU32Key{keyIPv4, keyUDP, keyIHL5, keyFirstFrag, keyToServer}, redirect(portIx, netlink.TCA_EGRESS_REDIR)),
		u32(portFilter(ivIx), []netlink.TcU32Key{keyIPv4, keyUDP, keyIHL5}, nil),
		u32(portFilter(ivIx), []netlink.TcU32Key{keyIPv4, keyUDP}, redirect(portIx, netlink.TCA_EGRESS_REDIR)),
	}
}

// ndFilters keep the guest's IPv6 neighbour solicitations and
// advertisements for an address with the shared MAC's EUI-64 interface
// identifier — the host's own link-local and SLAAC addresses, which a
// guest deriving its identifiers from the MAC makes too — from leaving:
// its duplicate address detection and its answers would claim or contest
// the host's addresses. They go to the DHCP port, where vmrun drops them.
// (IPv6 is the EtherType before the network header, untagged or not; the
// offsets assume no extension header before ICMPv6, as NDP sends.)
func ndFilters(ivIx, portIx int, mac net.HardwareAddr) []netlink.Filter {
	iid := []byte{mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
	keys := func(icmpType uint32) []netlink.TcU32Key {
		return []netlink.TcU32Key{
			keyIPv6,
			{Off: 4, Mask: 0x0000ff00, Val: 58 << 8}, // next header ICMPv6
			{Off: 40, Mask: 0xff000000, Val: icmpType << 24}, // its type
			{Off: 56, Mask: 0xffffffff, Val: binary.BigEndian.Uint32(iid[:4])},
			{Off: 60, Mask: 0xffffffff, Val: binary.BigEndian.Uint32(iid[4:])}, // the target's interface identifier
		}
	}
	var out []netlink.Filter
	for _, typ := range []uint32{135, 136} { // solicitation, advertisement
		out = append(out, u32(portFilter(ivIx), keys(typ), redirect(portIx, netlink.TCA_EGRESS_REDIR)))
	}
	return out
}

// rootQdisc is the handle of the ipvtap's root qdisc, the filters' parent.
var rootQdisc = netlink.MakeHandle(1, 0)

// portFilter is where every filter of the port goes: one u32 classifier
// of protocol "all" on the ipvtap's qdisc (one priority), which tries its
// filters in the order of their handles (addPortFilters numbers them in
// the order they must be tried). One classifier per filter would cost each
// a classifier's creation.
func portFilter(ivIx int) netlink.FilterAttrs {
	return netlink.FilterAttrs{LinkIndex: ivIx, Parent: rootQdisc, Priority: 1, Protocol: unix.ETH_P_ALL}
}

// answerFilter, first: a frame from proxyMAC — vmrun's answer, sent on
// the ipvtap (openAnswerSocket) — goes into the ipvtap's receive path, to
// the guest. (A packet socket's frame has its network header right after
// the 14-byte Ethernet header, so the source MAC is the 8 bytes before it
// but the EtherType.) A guest that sends from that MAC gets its own frame
// back, and nothing more.
func answerFilter(ivIx int) netlink.Filter {
	keys := []netlink.TcU32Key{
		{Off: -8, Mask: 0xffffffff, Val: binary.BigEndian.Uint32(proxyMAC[:4])},
		{Off: -4, Mask: 0xffff0000, Val: uint32(binary.BigEndian.Uint16(proxyMAC[4:])) << 16},
	}
	return u32(portFilter(ivIx), keys, redirect(ivIx, netlink.TCA_INGRESS_REDIR))
}

// passFilter, last: every other frame goes on, in fq_codel's flow 1.
func passFilter(ivIx int) netlink.Filter {
	return u32(portFilter(ivIx), []netlink.TcU32Key{{}}, nil)
}

// u32 is a terminal u32 filter matching all keys; with a nil action a
// match ends the classification and the frame passes (in fq_codel's flow
// 1, its class 1:1).
func u32(at netlink.FilterAttrs, keys []netlink.TcU32Key, act netlink.Action) *netlink.U32 {
	f := &netlink.U32{FilterAttrs: at, Sel: &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: uint8(len(keys)), Keys: keys}}
	if act != nil {
		f.Actions = []netlink.Action{act}
	} else {
		f.ClassId = netlink.MakeHandle(1, 1)
	}
	return f
}

// redirect is a mirred redirect to link ix (egress: its transmit; ingress:
// its receive path).
func redirect(ix int, how netlink.MirredAct) *netlink.MirredAction {
	a := netlink.NewMirredAction(ix)
	a.MirredAction = how
	return a
}
