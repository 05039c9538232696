package nat

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// TestNATRuleset checks vmrun's table as data: the chains and each rule,
// rendered in nft syntax.
func TestNATRuleset(t *testing.T) {
	rs := baseRuleset(netip.MustParsePrefix("10.201.0.0/24"), "vmrnat0")
	if rs.Table.Name != "vmrun" || rs.Table.Family != nftables.TableFamilyIPv4 {
		t.Errorf("table %+v", rs.Table)
	}
	var chains []string
	for _, c := range rs.Chains {
		chains = append(chains, string(c.Type)+" "+c.Name)
		if c.Policy == nil || *c.Policy != nftables.ChainPolicyAccept || c.Hooknum == nil || c.Priority == nil {
			t.Errorf("chain %s is not an accept base chain", c.Name)
		}
	}
	wantChains := []string{"nat prerouting", "nat output", "nat postrouting", "filter forward", "filter input"}
	if !reflect.DeepEqual(chains, wantChains) {
		t.Errorf("chains %q", chains)
	}
	var got []string
	for _, r := range rs.Rules {
		got = append(got, r.Chain.Name+": "+renderRule(r))
	}
	want := []string{
		`postrouting: ip saddr 10.201.0.0/24 oifname != "vmrnat0" masquerade`,
		`postrouting: oifname "vmrnat0" ip saddr 10.201.0.0/24 ct status dnat masquerade`,
		`postrouting: oifname "vmrnat0" ip saddr 127.0.0.0/8 masquerade`,
		`forward: oifname "vmrnat0" ct state established,related accept`,
		`forward: oifname "vmrnat0" ct status dnat accept`,
		`forward: oifname "vmrnat0" iifname != "vmrnat0" drop`,
		`input: iifname "vmrnat0" ip daddr 127.0.0.0/8 ct state != established,related drop`,
		`input: iifname != "vmrnat0" iifname != "lo" ip daddr 10.201.0.1 udp dport 53 drop`,
		`input: iifname != "vmrnat0" iifname != "lo" ip daddr 10.201.0.1 tcp dport 53 drop`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNATForwardRules(t *testing.T) {
	rs := baseRuleset(netip.MustParsePrefix("10.201.0.0/24"), "vmrnat0")
	guest := netip.MustParseAddr("10.201.0.77")
	rules := forwardRules(rs.Table, rs.chain(chainPrerouting), rs.chain(chainOutput), "web", guest, []hostnet.Forward{
		{Proto: "tcp", HostPort: 8080, GuestPort: 80},
		{Proto: "udp", HostAddr: "10.77.0.2", HostPort: 5353, GuestPort: 53},
		{Proto: "tcp", HostAddr: "0.0.0.0", HostPort: 2222, GuestPort: 22},
	})
	var got []string
	for _, r := range rules {
		got = append(got, r.Chain.Name+": "+renderRule(r))
		if ruleVM(r) != "web" {
			t.Errorf("rule without the VM's comment: %x", r.UserData)
		}
	}
	want := []string{
		`prerouting: fib daddr type local tcp dport 8080 dnat to 10.201.0.77:80 comment "vmrun:web"`,
		`output: fib daddr type local tcp dport 8080 dnat to 10.201.0.77:80 comment "vmrun:web"`,
		`prerouting: ip daddr 10.77.0.2 udp dport 5353 dnat to 10.201.0.77:53 comment "vmrun:web"`,
		`output: ip daddr 10.77.0.2 udp dport 5353 dnat to 10.201.0.77:53 comment "vmrun:web"`,
		`prerouting: fib daddr type local tcp dport 2222 dnat to 10.201.0.77:22 comment "vmrun:web"`,
		`output: fib daddr type local tcp dport 2222 dnat to 10.201.0.77:22 comment "vmrun:web"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if vm := ruleVM(&nftables.Rule{}); vm != "" {
		t.Errorf("a rule without comment belongs to %q", vm)
	}
}

func TestForwardBlockers(t *testing.T) {
	drop, accept := nftables.ChainPolicyDrop, nftables.ChainPolicyAccept
	chain := func(fam nftables.TableFamily, table, name string, hook *nftables.ChainHook, policy *nftables.ChainPolicy) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: &nftables.Table{Name: table, Family: fam}, Hooknum: hook, Policy: policy}
	}
	chains := []*nftables.Chain{
		chain(nftables.TableFamilyIPv4, "filter", "FORWARD", nftables.ChainHookForward, &drop), // Docker's iptables-nft
		chain(nftables.TableFamilyIPv4, "filter", "INPUT", nftables.ChainHookInput, &drop),     // not forwarding
		chain(nftables.TableFamilyINet, "fw", "fwd", nftables.ChainHookForward, &drop),         // firewalld-style
		chain(nftables.TableFamilyIPv4, "vmrun", "forward", nftables.ChainHookForward, &drop),  // our own
		chain(nftables.TableFamilyIPv6, "filter", "FORWARD", nftables.ChainHookForward, &drop), // IPv6 only
		chain(nftables.TableFamilyIPv4, "other", "fwd", nftables.ChainHookForward, &accept),    // accepts
		chain(nftables.TableFamilyIPv4, "other", "DOCKER-USER", nil, nil),                      // regular chain
	}
	got := forwardBlockers(chains)
	want := []forwardBlocker{{"ip", "filter", "FORWARD"}, {"inet", "fw", "fwd"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	msg := forwardBlockNotice(got)
	for _, s := range []string{"table ip filter, chain FORWARD", "table inet fw, chain fwd", "cannot override",
		"iptables -I DOCKER-USER -i vmrnat0 -j ACCEPT", "iptables -I DOCKER-USER -o vmrnat0 -j ACCEPT"} {
		if !strings.Contains(msg, s) {
			t.Errorf("notice %q lacks %q", msg, s)
		}
	}
	if msg := forwardBlockNotice(want[1:]); !strings.Contains(msg, "nft insert rule inet fw fwd iifname vmrnat0 accept") {
		t.Errorf("nft fix: %q", msg)
	}
	if strings.Contains(msg, "\n") {
		t.Error("notice is not one line")
	}
}
