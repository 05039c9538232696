package testutil

import (
	"net"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// DropForeignMACs makes dev, in n, drop every frame it receives whose
// source MAC is not allowed, as a cloud network (or a switch with port
// security) drops frames from MACs it did not assign: an nftables netdev
// ingress rule (table "cloud"), gone with the namespace.
func DropForeignMACs(t testing.TB, n *Netns, dev string, allowed net.HardwareAddr) {
	t.Helper()
	err := n.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyNetdev, Name: "cloud"})
		policy := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "in", Table: tbl, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityFilter, Device: dev, Policy: &policy})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: allowed},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		return c.Flush()
	})
	if err != nil {
		t.Fatalf("the LAN's MAC filter on %s: %v", dev, err)
	}
}
