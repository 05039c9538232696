package netsetup

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// MaxQueues is the most queues a tap or macvtap accepts (the kernel's
// MAX_TAP_QUEUES); DefaultMaxQueues caps the default of one per CPU.
const (
	MaxQueues        = 256
	DefaultMaxQueues = 8
)

// Request is what the user asked for (flags and config).
type Request struct {
	// Mode is the --net mode; "" means Auto.
	Mode Mode
	// Parent is the interface of --net MODE:PARENT.
	Parent string
	// Uplink is --uplink: the interface auto (and modes without a parent) use
	// instead of the default-route interface.
	Uplink string
	// Name is the VM name: it derives the MAC and the owned link names.
	Name string
	// MAC is the guest MAC given with --mac; used when MACSet.
	MAC    net.HardwareAddr
	MACSet bool
	// Queues is the number of queues; 0 means one per host CPU, at most
	// DefaultMaxQueues. Pass the guest's vCPU count when known.
	Queues int
	// Forwards are --forward host-port → guest-port forwards.
	Forwards []Forward
	// GuestIP is --guest-ip: the guest's own address (routed: given
	// instead of a lease taken upstream; ipvtap: registered at once instead
	// of learnt); nil when not given.
	GuestIP *net.IPNet
	// Gateway is --gateway: the guest's default gateway with GuestIP
	// (meaningless in routed mode, whose gateway is RoutedGateway).
	Gateway net.IP
	// NAT configures --net nat (subnet, DNS upstreams); zero means defaults.
	NAT NATOptions
	// NoHostLink is --no-host-link: ipvtap and macvtap make no host-side
	// link, bridge no routes through the bridge, and the guest is not
	// reachable from this host (on a bridge: unless the host has an
	// address there).
	NoHostLink bool
	// Limits, when set, limit an unprivileged vmrun (capabilities from
	// `vmrun setup`, not root) to the interfaces of the administrator's
	// ACL; nil for root, whom nothing limits.
	Limits *Limits
	// ProbeCache is the file where Detect keeps the kernel's answer to
	// which link types it can create, for this boot and these loaded
	// modules, so that a start does not probe again; "" probes every time.
	ProbeCache string
}

// Interface returns the interface Detect must look at for this request:
// Parent, else Uplink, else "" (the default-route interface).
func (r Request) Interface() string {
	if r.Parent != "" {
		return r.Parent
	}
	return r.Uplink
}

// Plan is a decided network attachment: what Apply will create, and why.
type Plan struct {
	// Name is the VM name (owner of the links: their alias is OwnerAlias(Name)).
	Name string `json:"name"`
	// Mode is the chosen mode (never Auto).
	Mode Mode `json:"mode"`
	// Parent is the bridge (Bridge) or the lower interface (Macvtap).
	Parent string `json:"parent"`
	// Uplink and UplinkKind describe the interface detection looked at.
	Uplink     string     `json:"uplink"`
	UplinkKind UplinkKind `json:"uplink_kind"`
	// Network is the key under which --net auto remembers what worked on
	// the uplink's network (NetworkKey: `gateway MAC`, on Wi-Fi
	// `ssid "NAME" gateway MAC`); "" for other modes, or when the
	// gateway's MAC is unknown. Set by the caller that detected the host
	// (internal/netplan), not by Decide.
	Network string `json:"network"`
	// MAC is the guest NIC's MAC.
	MAC net.HardwareAddr `json:"-"`
	// MTU is the parent's MTU: the guest NIC should use it (virtio-net host_mtu).
	MTU int `json:"mtu"`
	// Vhost: open /dev/vhost-net for each queue.
	Vhost bool `json:"vhost"`
	// Queues is the number of tap queues (fds).
	Queues int `json:"queues"`
	// LinkName is the owned, deterministic name of the link Apply creates.
	LinkName string `json:"link_name"`
	// Forwards are the host → guest port forwards (user and nat modes).
	Forwards []Forward `json:"forwards"`
	// Passt is the passt binary user mode runs; "" means QEMU's slirp.
	Passt string `json:"passt"`
	// NAT is the configuration of --net nat.
	NAT *NATOptions `json:"nat"`
	// Gateway is the guest's gateway given with --guest-ip; ipvtap never
	// registers it as a guest address.
	Gateway net.IP `json:"gateway"`
	// NoHostLink: ipvtap and macvtap create no host-side link, bridge no
	// routes through the bridge (the host cannot reach the guest).
	NoHostLink bool `json:"no_host_link"`
	// Reason is one sentence saying why this mode.
	Reason string `json:"reason"`
	// Notice, when set, is one line to show the user once: why a better mode
	// was not possible, or a caveat of the chosen one.
	Notice string `json:"notice"`
	// GuestAddr says where a routed guest's address comes from; GuestIP is
	// that address when it is static (--guest-ip; ipvtap registers it at
	// once).
	GuestAddr GuestAddrSource `json:"guest_addr"`
	GuestIP   net.IP          `json:"guest_ip"`
	// Gen is the attachment's generation within its run: 0 for the one the
	// run started with, one more for each a switch makes while the one
	// before still exists. Links of an odd generation have names of their
	// own (LinkNameGen), so the two never collide; WithGen sets it.
	Gen int `json:"-"`
	// RuntimeRoot is vmrun's runtime root (see internal/rundir), set by
	// the caller before Apply, not by Decide: passt's command line names
	// the VM's directory under it, and NAT keeps its shared state there.
	RuntimeRoot string `json:"-"`
}

// MarshalJSON writes MAC in its usual colon form ("" when unknown).
func (p Plan) MarshalJSON() ([]byte, error) {
	type plain Plan
	return hostnet.MarshalWithMAC(plain(p), p.MAC, false)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Plan) UnmarshalJSON(b []byte) error {
	type plain Plan
	var v plain
	mac, err := hostnet.UnmarshalWithMAC(b, &v)
	*p = Plan(v)
	p.MAC = mac
	return err
}

// LinkRole is the one-letter suffix of an owned link name.
type LinkRole byte

// The roles of the links vmrun creates.
const (
	RoleTap     LinkRole = 't'
	RoleMacvtap LinkRole = 'm'
	RoleIPVtap  LinkRole = 'i'
	RoleShim    LinkRole = 's'
)

// LinkName returns the name of the link of the given role owned by VM vm:
// "vmr" + 8 hex digits of SHA-256(vm) + the role letter, 12 bytes (the
// kernel allows 15). It is deterministic, so a later run finds the leftovers
// of a crashed one.
func LinkName(vm string, role LinkRole) string {
	h := sha256.Sum256([]byte(vm))
	return "vmr" + hex.EncodeToString(h[:4]) + string(rune(role))
}

// LinkNameGen is LinkName for an attachment of generation gen (Plan.Gen):
// an odd generation has a "2" before the role letter, 13 bytes, so that a
// switch's new attachment never takes the name of the one the guest is
// still on (the role letter stays last).
func LinkNameGen(vm string, role LinkRole, gen int) string {
	if gen%2 == 0 {
		return LinkName(vm, role)
	}
	n := LinkName(vm, role)
	return n[:len(n)-1] + "2" + string(rune(role))
}

// WithGen returns p as the plan of generation gen: its links (LinkName,
// and the host link or shim Apply derives) named for that generation.
func (p Plan) WithGen(gen int) Plan {
	p.Gen = gen
	if p.LinkName != "" {
		p.LinkName = LinkNameGen(p.Name, roleFor(p.Mode), gen)
	}
	return p
}

// roleFor is the role of the link a plan of mode m creates for the guest.
func roleFor(m Mode) LinkRole {
	switch m {
	case Macvtap:
		return RoleMacvtap
	case IPVtap:
		return RoleIPVtap
	}
	return RoleTap
}

// OwnerAlias is the IFLA_IFALIAS vmrun puts on every link it creates for VM
// vm; cleanup deletes only links that carry it.
func OwnerAlias(vm string) string { return hostnet.OwnerAlias(vm) }

// choice is one row of the decision table.
type choice struct {
	mode   Mode
	parent string
	mtu    int
	reason string
	notice string
}

// Decide picks the network attachment for request r on a host described by
// f. It is pure: every row of the decision table is a unit test. Who asks
// is an input too — the privileges in f.Caps, and r.Limits, the ACL of an
// unprivileged vmrun — so that a caller decides once.
func Decide(f Facts, r Request) (Plan, error) {
	if err := r.check(f); err != nil {
		return Plan{}, err
	}
	c, err := choose(f, r)
	if err != nil {
		return Plan{}, err
	}
	if err := r.checkGuestAddr(c.mode); err != nil {
		return Plan{}, err
	}
	if r.Limits != nil {
		return r.Limits.limit(f, r, r.plan(f, c))
	}
	return r.plan(f, c), nil
}

func (r Request) check(f Facts) error {
	switch {
	case r.Name == "":
		return hostnet.Refuse(ErrBadRequest, "the VM has no name; vmrun needs one to name its links and derive its MAC")
	case r.Parent != "" && r.Uplink != "" && r.Parent != r.Uplink:
		return hostnet.Refuse(ErrBadRequest, "--net %s:%s and --uplink %s name different interfaces; give only one", r.mode(), r.Parent, r.Uplink)
	case r.Interface() != f.Uplink && r.Interface() != "":
		return hostnet.Refuse(ErrBadRequest, "the detected facts describe %q, not the requested interface %q", f.Uplink, r.Interface())
	case r.MACSet && len(r.MAC) != 6:
		return hostnet.Refuse(ErrBadRequest, "MAC address %q is not valid; write six hex bytes, e.g. 52:54:00:12:34:56", r.MAC)
	case r.Queues < 0 || r.Queues > MaxQueues:
		return hostnet.Refuse(ErrBadRequest, "%d queues asked; use 1 to %d", r.Queues, MaxQueues)
	}
	return nil
}

// checkForwards refuses forwards the chosen mode cannot honour (see
// CheckForwardMode; NAT's own limits, checkNATForwards), and those QEMU
// 7.2's slirp cannot bind: it binds only IPv4 host addresses.
func (r Request) checkForwards(f Facts) error {
	if len(r.Forwards) == 0 {
		return nil
	}
	if err := CheckForwardMode(r.mode(), r.Forwards); err != nil {
		return err
	}
	if r.mode() == NAT {
		return checkNATForwards(r.Forwards)
	}
	if passtUsable(f) {
		return nil // passt binds IPv6 host addresses too
	}
	for _, fw := range r.Forwards {
		if ip := net.ParseIP(fw.HostAddr); fw.HostAddr != "" && (ip == nil || ip.To4() == nil) {
			return hostnet.Refuse(ErrBadRequest, "--forward %s: user-mode networking binds only IPv4 host addresses; use 127.0.0.1 or 0.0.0.0", fw)
		}
	}
	return nil
}

func (r Request) mode() Mode {
	if r.Mode == "" {
		return Auto
	}
	return r.Mode
}

func choose(f Facts, r Request) (choice, error) {
	if err := r.checkForwards(f); err != nil {
		return choice{}, err
	}
	switch m := r.mode(); m {
	case Auto:
		return chooseAuto(f, r)
	case Bridge:
		return forceBridge(f, r)
	case Macvtap:
		return forceMacvtap(f)
	case User:
		return userChoice("user-mode networking, as asked (--net user): the guest reaches out through this host (passt, else QEMU) and is reachable only through --forward ports", ""), nil
	case None:
		return choice{mode: None, reason: "no network, as asked (--net none)"}, nil
	case Routed:
		return forceRouted(f, r)
	case NAT:
		return natChoice(f)
	case IPVtap:
		return forceIPVtap(f, r)
	default:
		return choice{}, hostnet.Refuse(ErrUnknownMode, "unknown network mode %q; use one of auto, bridge, macvtap, ipvtap, routed, nat, user, none", m)
	}
}

func userChoice(reason, notice string) choice {
	return choice{mode: User, reason: reason, notice: notice}
}

// userFallback is the user-mode row reached when something better is
// impossible; why says what, and the notice tells the user.
func userFallback(why string) choice {
	return userChoice("user-mode networking: the guest can reach out but is not reachable from the LAN",
		why+"; using user-mode networking")
}

// chooseAuto walks the decision table of DESIGN.md "Network modes".
func chooseAuto(f Facts, r Request) (choice, error) {
	if f.Named && !f.Exists {
		return choice{}, hostnet.Refuse(ErrNoInterface, "interface %s does not exist; name another with --uplink IF, or leave it out to use the default route", f.Uplink)
	}
	if f.Named && f.Kind != UplinkNone && !f.Up {
		return choice{}, hostnet.Refuse(ErrLinkDown, "interface %s is down; bring it up (ip link set %s up) or name another with --uplink IF", f.Uplink, f.Uplink)
	}
	if len(r.Forwards) > 0 {
		return userChoice("--forward asks for host ports forwarded to the guest, which user-mode networking provides (a macvtap guest is not even reachable from this host)", ""), nil
	}
	if f.Kind == UplinkNone {
		return userFallback("there is no default route (no network?)"), nil
	}
	ideal := idealRow(f)
	if ideal.mode == User {
		return ideal, nil
	}
	if ideal.mode == IPVtap && r.MACSet {
		ideal = macRoutedRow(f)
	}
	if missing := missingCap(f.Caps, ideal.mode); missing != "" {
		return userFallback(fmt.Sprintf("%s, which --net %s on %s needs", missing, ideal.mode, ideal.parent)), nil
	}
	return ideal, nil
}

// idealRow is the auto row for the uplink's kind, before capabilities.
func idealRow(f Facts) choice {
	switch f.Kind {
	case UplinkBridge:
		return choice{mode: Bridge, parent: f.Uplink, mtu: f.MTU,
			reason: fmt.Sprintf("%s is a Linux bridge: a tap on it puts the guest on the same LAN as the host", f.Uplink)}
	case UplinkBridgePort:
		if !f.MasterUp {
			return userFallback(fmt.Sprintf("%s is a port of bridge %s, which is down", f.Uplink, f.Master))
		}
		return choice{mode: Bridge, parent: f.Master, mtu: f.MasterMTU,
			reason: fmt.Sprintf("%s is a port of bridge %s: a tap on %s puts the guest on the LAN (macvtap cannot attach to a bridge port)", f.Uplink, f.Master, f.Master)}
	case UplinkEthernet:
		return macvtapRow(f, fmt.Sprintf("%s is wired Ethernet with no bridge: macvtap (bridge mode) gives the guest its own MAC on the LAN without reconfiguring the host", f.Uplink))
	case UplinkWireless:
		return wirelessRow(f)
	default:
		why := fmt.Sprintf("%s is not an Ethernet device (%s), so no guest can sit on it at layer 2", f.Uplink, linkTypeOr(f.LinkType))
		if natPrivileged(f.Caps) {
			return choice{mode: NAT, parent: NATBridge, mtu: 1500,
				reason: fmt.Sprintf("%s: NAT behind this host's address, on vmrun's private bridge %s; this host and other NAT guests reach the guest, the LAN only through --forward ports", why, NATBridge),
				notice: why + "; using NAT (the guest is not reachable from the LAN)"}
		}
		if ps := missingPrivs(f.Caps, NAT); len(ps) > 0 && f.Caps.Tun {
			why += fmt.Sprintf(", and NAT behind this host needs %s, which vmrun lacks (%s)", joinPrivs(ps), privilegeHint(NAT))
		}
		return userFallback(why)
	}
}

// natPrivileged says whether vmrun has what --net nat needs beyond
// CAP_NET_ADMIN and /dev/net/tun (the DHCP responder's packet socket, and
// in practice root: see docs/security.md), so that auto may pick NAT where
// no layer-2 mode works. A group member's vmrun (CAP_NET_ADMIN only) gets
// user mode there instead.
func natPrivileged(c Caps) bool {
	return c.Tun && len(missingPrivs(c, NAT)) == 0
}

func macvtapRow(f Facts, reason string) choice {
	return choice{mode: Macvtap, parent: f.Uplink, mtu: f.MTU, reason: reason, notice: macvtapNoHostNotice(f.Uplink)}
}

// macvtapNoHostNotice is the notice of a macvtap guest the host cannot
// reach: with --no-host-link (Request.plan drops it otherwise, since the
// host link makes the guest reachable from this host).
func macvtapNoHostNotice(uplink string) string {
	return fmt.Sprintf("the guest is reachable from %s's LAN but not from this host (a macvtap limitation, kept by --no-host-link); drop --no-host-link, or use --net user with --forward, for host access", uplink)
}

// wirelessRow decides for a Wi-Fi uplink. The ipvtap and routed rows for a
// 3-address station come here (before the user-mode fallback).
func wirelessRow(f Facts) choice {
	w := f.Wireless
	if w == nil {
		w = &Wireless{IfType: WifiOther}
	}
	switch {
	case w.FourAddr:
		return macvtapRow(f, fmt.Sprintf("%s is Wi-Fi in 4-address mode, whose frames can carry the guest's own MAC: macvtap (bridge mode) puts the guest on the LAN", f.Uplink))
	case w.IfType == WifiAP || w.IfType == WifiAPVLAN:
		return macvtapRow(f, fmt.Sprintf("%s is a Wi-Fi access point, which may send frames from any MAC: macvtap (bridge mode) puts the guest on its network", f.Uplink))
	case w.IfType == WifiStation || w.IfType == WifiAdHoc:
		return stationRow(f)
	case w.IfType == WifiMesh:
		return macvtapRow(f, fmt.Sprintf("%s is an 802.11s mesh point, which carries frames of other MACs (mesh proxying, address extension) and may be bridged: macvtap (bridge mode) puts the guest on the mesh", f.Uplink))
	case w.IfType == WifiMonitor:
		return userFallback(fmt.Sprintf("%s is a Wi-Fi interface in monitor mode, which captures raw 802.11 frames and is connected to no network, so it cannot carry a guest", f.Uplink))
	default:
		return userFallback(fmt.Sprintf("%s is a Wi-Fi interface in %s mode, which cannot carry a guest", f.Uplink, w.IfType))
	}
}

func wifiNoun(iftype string) string {
	if iftype == WifiAdHoc {
		return "an ad-hoc (IBSS) Wi-Fi interface"
	}
	return "a Wi-Fi station"
}

func linkTypeOr(t string) string {
	if t == "" {
		return "unknown type"
	}
	return t
}

// missingCap says which capability (a privilege of the process, or a
// feature of the kernel) mode lacks, or "".
func missingCap(c Caps, mode Mode) string {
	if why := missingPrivilege(c, mode); why != "" {
		return why
	}
	switch {
	case mode == Bridge && !c.Tun:
		return tunProblem(c)
	case mode == Macvtap && !c.Macvtap:
		return "this kernel cannot create macvtap links"
	case mode == IPVtap && !c.IPVtap:
		return "this kernel cannot create ipvtap links (modprobe ipvtap)"
	case mode == Routed && !c.Tun:
		return tunProblem(c)
	}
	return ""
}

// forceBridge handles --net bridge[:BR].
func forceBridge(f Facts, r Request) (choice, error) {
	br, mtu, up, err := bridgeTarget(f, r.Parent != "")
	if err != nil {
		return choice{}, err
	}
	if !up {
		return choice{}, hostnet.Refuse(ErrLinkDown, "bridge %s is down; bring it up (ip link set %s up) or choose another with --net bridge:NAME", br, br)
	}
	if err := needCaps(f.Caps, Bridge); err != nil {
		return choice{}, err
	}
	return choice{mode: Bridge, parent: br, mtu: mtu,
		reason: fmt.Sprintf("a tap on bridge %s, as asked (--net bridge): the guest is on %s's LAN", br, br)}, nil
}

// bridgeTarget finds the bridge of --net bridge[:BR]: BR itself when
// given, else the uplink if it is a bridge, else the uplink's bridge.
func bridgeTarget(f Facts, explicit bool) (name string, mtu int, up bool, err error) {
	switch {
	case explicit && !f.Exists:
		return "", 0, false, hostnet.Refuse(ErrNoInterface, "bridge %s does not exist; create it or choose another with --net bridge:NAME", f.Uplink)
	case f.Kind == UplinkBridge:
		return f.Uplink, f.MTU, f.Up, nil
	case explicit && f.Kind == UplinkBridgePort:
		return "", 0, false, hostnet.Refuse(ErrNotBridge, "%s is not a bridge but a port of bridge %s; use --net bridge:%s", f.Uplink, f.Master, f.Master)
	case explicit:
		return "", 0, false, hostnet.Refuse(ErrNotBridge, "%s is not a bridge (it is %s); choose a bridge with --net bridge:NAME", f.Uplink, describeKind(f))
	case f.Kind == UplinkBridgePort:
		return f.Master, f.MasterMTU, f.MasterUp, nil
	case f.Kind == UplinkNone && !f.Named:
		return "", 0, false, hostnet.Refuse(ErrNoUplink, "--net bridge: there is no default route to find a bridge from; name one with --net bridge:NAME")
	case f.Named && !f.Exists:
		return "", 0, false, hostnet.Refuse(ErrNoInterface, "interface %s does not exist; choose a bridge with --net bridge:NAME", f.Uplink)
	default:
		return "", 0, false, hostnet.Refuse(ErrNotBridge, "--net bridge: the uplink %s is %s, neither a bridge nor a bridge port; choose a bridge with --net bridge:NAME", f.Uplink, describeKind(f))
	}
}

// forceMacvtap handles --net macvtap[:IF].
func forceMacvtap(f Facts) (choice, error) {
	if err := macvtapSuitable(f); err != nil {
		return choice{}, err
	}
	if !f.Up {
		return choice{}, hostnet.Refuse(ErrLinkDown, "%s is down; bring it up (ip link set %s up) or choose another with --net macvtap:IF", f.Uplink, f.Uplink)
	}
	if err := needCaps(f.Caps, Macvtap); err != nil {
		return choice{}, err
	}
	c := macvtapRow(f, fmt.Sprintf("macvtap (bridge mode) on %s, as asked (--net macvtap): the guest has its own MAC on %s's LAN", f.Uplink, f.Uplink))
	return c, nil
}

// macvtapSuitable refuses the interfaces a macvtap cannot work on. A bridge
// port is refused: the bridge owns the port's receive handler, so the kernel
// would refuse the macvtap (EBUSY) anyway; a macvtap on the bridge itself
// is fine and is what the message suggests.
func macvtapSuitable(f Facts) error {
	dev := f.Uplink
	switch {
	case !f.Named && f.Kind == UplinkNone:
		return hostnet.Refuse(ErrNoUplink, "--net macvtap: there is no default route; name the interface with --net macvtap:IF")
	case !f.Exists:
		return hostnet.Refuse(ErrNoInterface, "interface %s does not exist; choose another with --net macvtap:IF", dev)
	case f.Kind == UplinkBridgePort:
		return hostnet.Refuse(ErrUnsuitable, "%s is a port of bridge %s, and macvtap cannot attach to a bridge port (the bridge owns its receive path); use --net bridge:%s or --net macvtap:%s", dev, f.Master, f.Master, f.Master)
	case f.Kind == UplinkWireless && !wirelessCarriesMACs(f.Wireless):
		return hostnet.Refuse(ErrUnsuitable, "%s is %s without 4-address mode: the access point drops every frame from the guest's own MAC, so macvtap cannot work there; use --net ipvtap:%s (or --net auto)", dev, wifiNounFor(f.Wireless), dev)
	case f.Kind == UplinkOther:
		return hostnet.Refuse(ErrUnsuitable, "%s is not an Ethernet device (%s); macvtap needs one", dev, linkTypeOr(f.LinkType))
	case macvtapBlocked(f) != "":
		return hostnet.Refuse(ErrUnsuitable, "%s; use --net ipvtap:%s, or remove that link", macvtapBlocked(f), dev)
	}
	return nil
}

func wirelessCarriesMACs(w *Wireless) bool {
	return w != nil && (w.FourAddr || w.IfType == WifiAP)
}

func wifiNounFor(w *Wireless) string {
	if w == nil {
		return "a Wi-Fi interface"
	}
	if w.IfType == WifiStation || w.IfType == WifiAdHoc {
		return wifiNoun(w.IfType)
	}
	return "a Wi-Fi interface in " + w.IfType + " mode"
}

// tunProblem says why /dev/net/tun cannot be used.
func tunProblem(c Caps) string {
	if c.TunDenied {
		return "this user may not open /dev/net/tun"
	}
	return "/dev/net/tun cannot be opened"
}

// refuseTun refuses --net mode, which needs /dev/net/tun, with the fix
// that fits: a permission to give when the device exists, else the module.
func refuseTun(mode string, c Caps) error {
	if c.TunDenied {
		return hostnet.Refuse(ErrNoPrivilege, "--net %s needs /dev/net/tun, which this user may not open read-write; run vmrun as root, or restore the device's usual mode (chmod 0666 /dev/net/tun), or use --net user", mode)
	}
	return hostnet.Refuse(ErrNoKernelSupport, "--net %s needs /dev/net/tun, which cannot be opened; load the tun module (modprobe tun) or use --net user", mode)
}

// needCaps refuses a forced mode the host cannot provide: a capability
// its set-up needs (Needs), or a kernel feature.
func needCaps(c Caps, mode Mode) error {
	if ps := missingPrivs(c, mode); len(ps) > 0 {
		instead := "--net user"
		if mode == IPVtap && len(missingPrivs(c, Routed)) == 0 {
			instead = "--net routed"
		}
		return hostnet.Refuse(ErrNoPrivilege, "--net %s needs %s, which vmrun lacks; %s, or use %s", mode, joinPrivs(ps), privilegeHint(mode), instead)
	}
	switch {
	case mode == Bridge && !c.Tun:
		return refuseTun("bridge", c)
	case mode == Macvtap && !c.Macvtap:
		return hostnet.Refuse(ErrNoKernelSupport, "this kernel cannot create macvtap links (CONFIG_MACVTAP); use --net bridge:NAME or --net user")
	}
	return nil
}

func describeKind(f Facts) string {
	switch f.Kind {
	case UplinkEthernet:
		return "an Ethernet interface"
	case UplinkWireless:
		return wifiNounFor(f.Wireless)
	case UplinkBridgePort:
		return "a port of bridge " + f.Master
	case UplinkNone:
		return "missing"
	default:
		return "a " + linkTypeOr(f.LinkType) + " device"
	}
}

// plan turns the chosen row into a Plan.
func (r Request) plan(f Facts, c choice) Plan {
	p := Plan{
		Name: r.Name, Mode: c.mode, Parent: c.parent, Uplink: f.Uplink, UplinkKind: f.Kind,
		MAC: r.guestMAC(), MTU: c.mtu, Reason: c.reason, Notice: c.notice,
	}
	switch c.mode {
	case Bridge, Macvtap:
		p.LinkName = LinkName(r.Name, roleOf(c.mode))
		p.Queues = r.queues(f)
		p.Vhost = f.Caps.VhostNet
		// The host link (a macvlan beside the macvtap, or routes through
		// a bridge that has no address of the host's) reaches the guest.
		p.NoHostLink = r.NoHostLink
		if c.mode == Macvtap {
			if !r.NoHostLink && p.Notice == macvtapNoHostNotice(c.parent) {
				p.Notice = ""
			}
		}
	case IPVtap:
		// ipvlan does not rewrite source MACs: the guest sends from the parent's.
		p.MAC = append(net.HardwareAddr(nil), f.MAC...)
		p.LinkName = LinkName(r.Name, RoleIPVtap)
		p.Queues = r.queues(f)
		p.Vhost = f.Caps.VhostNet
		if r.GuestIP != nil {
			p.GuestIP = append(net.IP(nil), r.GuestIP.IP...)
		}
		p.Gateway, p.NoHostLink = r.Gateway, r.NoHostLink
	case Routed:
		p.LinkName = LinkName(r.Name, RoleTap)
		p.Queues = r.queues(f)
		p.Vhost = f.Caps.VhostNet
		p.GuestIP, p.GuestAddr = r.routedGuestAddr()
	case NAT:
		p.LinkName = LinkName(r.Name, RoleTap)
		p.Queues = r.queues(f)
		p.Vhost = f.Caps.VhostNet
		p.Forwards = append([]Forward(nil), r.Forwards...)
		nat := r.NAT
		p.NAT = &nat
	case User:
		p.Forwards = append([]Forward(nil), r.Forwards...)
		p.Passt, p.Notice = userBackend(f, p.Notice)
	case None:
		p.MAC = nil
	}
	return p
}

func roleOf(m Mode) LinkRole {
	if m == Macvtap {
		return RoleMacvtap
	}
	return RoleTap
}

func (r Request) guestMAC() net.HardwareAddr {
	if r.MACSet {
		return append(net.HardwareAddr(nil), r.MAC...)
	}
	return DeriveMAC(r.Name)
}

func (r Request) queues(f Facts) int {
	if r.Queues > 0 {
		return r.Queues
	}
	return min(max(f.CPUs, 1), DefaultMaxQueues)
}
