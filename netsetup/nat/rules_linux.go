package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// The chains of vmrun's table. Rendered in nft syntax (see renderRule),
// the table is:
//
//	table ip vmrun {
//	  chain prerouting  { type nat hook prerouting priority dstnat; }   # --forward DNAT, per VM
//	  chain output      { type nat hook output priority dstnat; }       # the same, for this host's own connections
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	    ip saddr SUBNET oifname != "vmrnat0" masquerade                  # guests → anywhere else
//	    oifname "vmrnat0" ip saddr SUBNET ct status dnat masquerade      # guest → host port → guest (hairpin)
//	    oifname "vmrnat0" ip saddr 127.0.0.0/8 masquerade                # localhost:PORT → guest
//	  }
//	  chain forward { type filter hook forward priority filter;
//	    oifname "vmrnat0" ct state established,related accept
//	    oifname "vmrnat0" ct status dnat accept
//	    oifname "vmrnat0" iifname != "vmrnat0" drop                       # the LAN reaches guests only through --forward
//	  }
//	  chain input { type filter hook input priority filter;
//	    iifname "vmrnat0" ip daddr 127.0.0.0/8 ct state != established,related drop
//	    iifname != "vmrnat0" iifname != "lo" ip daddr GATEWAY udp dport 53 drop   # the DNS forwarder is the guests'
//	    iifname != "vmrnat0" iifname != "lo" ip daddr GATEWAY tcp dport 53 drop
//	  }
//	}
//
// route_localnet is on for the bridge (localhost forwards need it); the
// input rule keeps guests from reaching this host's loopback services
// through it. Accepting in this table does not override a drop in another
// table at the same hook (every base chain sees the packet): see
// forwardBlockers.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainForward     = "forward"
	chainInput       = "input"
)

// ruleset is vmrun's table as data: what Apply creates.
type ruleset struct {
	Table  *nftables.Table
	Chains []*nftables.Chain
	Rules  []*nftables.Rule
}

// chain returns the chain of the ruleset named name.
func (rs ruleset) chain(name string) *nftables.Chain {
	for _, c := range rs.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func vmrunTable() *nftables.Table {
	return &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
}

// baseRuleset returns the shared table for the NAT network subnet on
// bridge.
func baseRuleset(subnet netip.Prefix, bridge string) ruleset {
	t := vmrunTable()
	accept := nftables.ChainPolicyAccept
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept}
	}
	pre := base(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := base(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := base(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	fwd := base(chainForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	in := base(chainInput, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	rule := func(c *nftables.Chain, exprs ...[]expr.Any) *nftables.Rule {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		return &nftables.Rule{Table: t, Chain: c, Exprs: all}
	}
	estRel := expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
	gw := netip.PrefixFrom(gateway(subnet), 32)
	notGuests := append(ifname(expr.MetaKeyIIFNAME, bridge, false), ifname(expr.MetaKeyIIFNAME, "lo", false)...)
	return ruleset{
		Table:  t,
		Chains: []*nftables.Chain{pre, out, post, fwd, in},
		Rules: []*nftables.Rule{
			rule(post, ipAddr(12, subnet, true), ifname(expr.MetaKeyOIFNAME, bridge, false), masq()),
			rule(post, ifname(expr.MetaKeyOIFNAME, bridge, true), ipAddr(12, subnet, true), ctBits(expr.CtKeySTATUS, ipsDstNAT, true), masq()),
			rule(post, ifname(expr.MetaKeyOIFNAME, bridge, true), ipAddr(12, loopback, true), masq()),
			rule(fwd, ifname(expr.MetaKeyOIFNAME, bridge, true), ctBits(expr.CtKeySTATE, estRel, true), verdict(expr.VerdictAccept)),
			rule(fwd, ifname(expr.MetaKeyOIFNAME, bridge, true), ctBits(expr.CtKeySTATUS, ipsDstNAT, true), verdict(expr.VerdictAccept)),
			rule(fwd, ifname(expr.MetaKeyOIFNAME, bridge, true), ifname(expr.MetaKeyIIFNAME, bridge, false), verdict(expr.VerdictDrop)),
			rule(in, ifname(expr.MetaKeyIIFNAME, bridge, true), ipAddr(16, loopback, true), ctBits(expr.CtKeySTATE, estRel, false), verdict(expr.VerdictDrop)),
			rule(in, notGuests, ipAddr(16, gw, true), l4port(unix.IPPROTO_UDP, 53), verdict(expr.VerdictDrop)),
			rule(in, notGuests, ipAddr(16, gw, true), l4port(unix.IPPROTO_TCP, 53), verdict(expr.VerdictDrop)),
		},
	}
}

// forwardRules returns the DNAT rules of VM vm's forwards to guest, in
// the prerouting chain (connections from elsewhere) and the output chain
// (this host's own). A forward without a host address matches every
// local address (fib daddr type local). Each rule carries the comment
// "vmrun:VM", by which the VM's rules are found and removed.
func forwardRules(t *nftables.Table, pre, out *nftables.Chain, vm string, guest netip.Addr, fws []hostnet.Forward) []*nftables.Rule {
	var rules []*nftables.Rule
	for _, fw := range fws {
		var dst []expr.Any
		if a, err := netip.ParseAddr(fw.HostAddr); err == nil && !a.IsUnspecified() {
			dst = ipAddr(16, netip.PrefixFrom(a.Unmap(), 32), true)
		} else {
			dst = fibLocal()
		}
		proto := byte(unix.IPPROTO_TCP)
		if fw.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		for _, c := range []*nftables.Chain{pre, out} {
			var e []expr.Any
			e = append(e, dst...)
			e = append(e, l4port(proto, fw.HostPort)...)
			e = append(e, dnat(guest, fw.GuestPort)...)
			rules = append(rules, &nftables.Rule{Table: t, Chain: c, Exprs: e, UserData: vmComment(vm)})
		}
	}
	return rules
}

// vmComment is the rule comment that marks VM vm's rules.
func vmComment(vm string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, "vmrun:"+vm)
}

// ruleVM returns the VM a rule's comment names ("" for none).
func ruleVM(r *nftables.Rule) string {
	s, ok := userdata.GetString(r.UserData, userdata.TypeComment)
	if !ok {
		return ""
	}
	vm, _ := strings.CutPrefix(s, "vmrun:")
	if vm == s {
		return ""
	}
	return vm
}

// ifnameBytes pads an interface name to IFNAMSIZ, as the kernel compares it.
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func ifname(key expr.MetaKey, name string, eq bool) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: cmpOp(eq), Register: 1, Data: ifnameBytes(name)}}
}

// ipAddr matches the IPv4 source (offset 12) or destination (16) address
// against prefix p.
func ipAddr(offset uint32, p netip.Prefix, eq bool) []expr.Any {
	p = p.Masked()
	a := p.Addr().As4()
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
	}
	return append(e, &expr.Cmp{Op: cmpOp(eq), Register: 1, Data: a[:]})
}

// ctBits matches (set: any of; unset: none of) bits of the conntrack
// state or status.
func ctBits(key expr.CtKey, bits uint32, set bool) []expr.Any {
	mask := binary.NativeEndian.AppendUint32(nil, bits)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: cmpOp(!set), Register: 1, Data: make([]byte, 4)},
	}
}

// fibLocal matches packets to any local address (fib daddr type local).
func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	}
}

// l4port matches the transport protocol and destination port.
func l4port(proto byte, port int) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, uint16(port))},
	}
}

func dnat(to netip.Addr, port int) []expr.Any {
	a := to.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, uint16(port))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func cmpOp(eq bool) expr.CmpOp {
	if eq {
		return expr.CmpOpEq
	}
	return expr.CmpOpNeq
}

// renderRule writes a rule built by this file (or read back from the
// kernel) in nft syntax, for tests and logs. Expressions it does not know
// are shown by type.
func renderRule(r *nftables.Rule) string {
	var out []string
	e := r.Exprs
	for len(e) > 0 {
		n, s := renderOne(e)
		out = append(out, s)
		e = e[n:]
	}
	if vm := ruleVM(r); vm != "" {
		out = append(out, fmt.Sprintf("comment %q", "vmrun:"+vm))
	}
	return strings.Join(out, " ")
}

// renderOne renders the expression (group) at the start of e and says how
// many expressions it took.
func renderOne(e []expr.Any) (int, string) {
	cmpAt := func(i int) (*expr.Cmp, bool) {
		if i < len(e) {
			c, ok := e[i].(*expr.Cmp)
			return c, ok
		}
		return nil, false
	}
	op := func(c *expr.Cmp) string {
		if c.Op == expr.CmpOpNeq {
			return "!= "
		}
		return ""
	}
	switch x := e[0].(type) {
	case *expr.Meta:
		if c, ok := cmpAt(1); ok {
			switch x.Key {
			case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
				name := map[expr.MetaKey]string{expr.MetaKeyIIFNAME: "iifname", expr.MetaKeyOIFNAME: "oifname"}[x.Key]
				return 2, fmt.Sprintf("%s %s%q", name, op(c), strings.TrimRight(string(c.Data), "\x00"))
			case expr.MetaKeyL4PROTO:
				if p, ok := e[2].(*expr.Payload); ok && len(e) > 3 && p.Base == expr.PayloadBaseTransportHeader && p.Offset == 2 {
					if pc, ok := cmpAt(3); ok && len(pc.Data) == 2 {
						return 4, fmt.Sprintf("%s dport %d", map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp"}[c.Data[0]], binary.BigEndian.Uint16(pc.Data))
					}
				}
			}
		}
	case *expr.Payload:
		if x.Base == expr.PayloadBaseNetworkHeader && x.Len == 4 {
			field := map[uint32]string{12: "ip saddr", 16: "ip daddr"}[x.Offset]
			bits, i := 32, 1
			if b, ok := e[1].(*expr.Bitwise); ok {
				bits, i = maskBits(b.Mask), 2
			}
			if c, ok := cmpAt(i); ok && len(c.Data) == 4 {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte(c.Data)), bits)
				s := p.String()
				if bits == 32 {
					s = p.Addr().String()
				}
				return i + 1, fmt.Sprintf("%s %s%s", field, op(c), s)
			}
		}
	case *expr.Ct:
		if b, ok := e[1].(*expr.Bitwise); ok && len(e) > 2 {
			if c, ok := cmpAt(2); ok {
				bits := binary.NativeEndian.Uint32(b.Mask)
				neg := c.Op == expr.CmpOpEq // "== 0": none of the bits
				if x.Key == expr.CtKeySTATE {
					return 3, "ct state " + map[bool]string{true: "!= ", false: ""}[neg] + ctStateNames(bits)
				}
				if x.Key == expr.CtKeySTATUS && bits == ipsDstNAT {
					return 3, "ct status " + map[bool]string{true: "!= ", false: ""}[neg] + "dnat"
				}
			}
		}
	case *expr.Fib:
		if c, ok := cmpAt(1); ok && x.FlagDADDR && x.ResultADDRTYPE && binary.NativeEndian.Uint32(c.Data) == unix.RTN_LOCAL {
			return 2, "fib daddr type local"
		}
	case *expr.Immediate:
		if y, ok := e[1].(*expr.Immediate); ok && len(e) > 2 {
			if n, ok := e[2].(*expr.NAT); ok && n.Type == expr.NATTypeDestNAT && len(x.Data) == 4 && len(y.Data) == 2 {
				return 3, fmt.Sprintf("dnat to %s:%d", netip.AddrFrom4([4]byte(x.Data)), binary.BigEndian.Uint16(y.Data))
			}
		}
	case *expr.Masq:
		return 1, "masquerade"
	case *expr.Verdict:
		return 1, map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop"}[x.Kind]
	case *expr.Counter:
		return 1, "counter"
	}
	return 1, fmt.Sprintf("<%T>", e[0])
}

func maskBits(m []byte) int {
	n := 0
	for _, b := range m {
		for i := 7; i >= 0; i-- {
			if b&(1<<i) != 0 {
				n++
			}
		}
	}
	return n
}

func ctStateNames(bits uint32) string {
	var names []string
	for _, s := range []struct {
		bit  uint32
		name string
	}{{expr.CtStateBitINVALID, "invalid"}, {expr.CtStateBitESTABLISHED, "established"}, {expr.CtStateBitRELATED, "related"}, {expr.CtStateBitNEW, "new"}} {
		if bits&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

// forwardBlocker is another table's base chain at the forward hook whose
// policy drops what no rule accepts.
type forwardBlocker struct {
	Family string // "ip", "inet"
	Table  string
	Chain  string
}

func (b forwardBlocker) String() string {
	return fmt.Sprintf("table %s %s, chain %s", b.Family, b.Table, b.Chain)
}

// forwardBlockers finds the base chains of other tables that hook IPv4
// forwarding with policy drop (iptables-nft's FORWARD chain after Docker
// set `iptables -P FORWARD DROP`, a firewalld or ufw ruleset, ...). Every
// base chain at a hook sees every packet, and a drop anywhere is final:
// the accept rules of vmrun's own table cannot override it.
func forwardBlockers(chains []*nftables.Chain) []forwardBlocker {
	var out []forwardBlocker
	for _, c := range chains {
		if c.Table == nil || c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookForward || c.Policy == nil || *c.Policy != nftables.ChainPolicyDrop {
			continue
		}
		fam := map[nftables.TableFamily]string{nftables.TableFamilyIPv4: "ip", nftables.TableFamilyINet: "inet"}[c.Table.Family]
		if fam == "" || fam == "ip" && c.Table.Name == tableName {
			continue
		}
		out = append(out, forwardBlocker{Family: fam, Table: c.Table.Name, Chain: c.Name})
	}
	return out
}

// Blockers returns, in nft terms, the base chains of other tables that
// drop forwarded IPv4 packets by policy in the calling thread's namespace
// (forwardBlockers), and the one-line notice NAT prints about them ("" for
// none).
func Blockers() (chains []string, notice string, err error) {
	nc, err := nftables.New()
	if err != nil {
		return nil, "", err
	}
	cs, err := nc.ListChains()
	if err != nil {
		return nil, "", err
	}
	bs := forwardBlockers(cs)
	for _, b := range bs {
		chains = append(chains, b.String())
	}
	if len(bs) > 0 {
		notice = forwardBlockNotice(bs)
	}
	return chains, notice, nil
}

// forwardBlockNotice is the one line that tells the user about blockers
// and the fix.
func forwardBlockNotice(bs []forwardBlocker) string {
	var names []string
	for _, b := range bs {
		names = append(names, b.String())
	}
	b := bs[0]
	fix := fmt.Sprintf("nft insert rule %s %s %s iifname %s accept; nft insert rule %s %s %s oifname %s accept",
		b.Family, b.Table, b.Chain, Bridge, b.Family, b.Table, b.Chain, Bridge)
	if b.Family == "ip" && b.Table == "filter" {
		chain := b.Chain
		if chain == "FORWARD" {
			chain = "DOCKER-USER" // Docker's chain for rules of one's own; else FORWARD
		}
		fix = fmt.Sprintf("iptables -I %s -i %s -j ACCEPT; iptables -I %s -o %s -j ACCEPT (or the same in chain FORWARD without Docker)", chain, Bridge, chain, Bridge)
	}
	return fmt.Sprintf("NAT: this host's firewall drops forwarded packets (%s: policy drop), which vmrun's own table cannot override: NAT guests reach this host but nothing beyond; to let them through: %s",
		strings.Join(names, "; "), fix)
}

// ipsDstNAT is the conntrack status bit IPS_DST_NAT (linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5
