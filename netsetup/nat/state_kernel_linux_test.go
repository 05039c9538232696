package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// TestSweepRecordedNotMade: the first NAT VM records every shared object
// it is about to make in one write of the state (prerecord), then makes
// them without writing again. A vmrun killed after that write leaves
// objects recorded that were made in part or not at all; gc (Sweep) must
// undo what was made, pass over what was not, restore IPv4 forwarding and
// remove the state.
func TestSweepRecordedNotMade(t *testing.T) {
	testutil.RequireRoot(t)
	subnet := netip.MustParsePrefix("10.231.0.0/24")
	steps := []string{"recorded", "bridge", "table", "forwarding"}
	for i, last := range steps {
		t.Run("killed after "+last, func(t *testing.T) {
			ns := testutil.NewNetns(t, "s")
			root := t.TempDir()
			if err := ns.Do(func() error { return killedAfter(root, subnet, steps[:i+1]) }); err != nil {
				t.Fatal(err)
			}
			if err := ns.Do(func() error { return Sweep(root) }); err != nil {
				t.Fatalf("gc: %v", err)
			}
			if err := ns.Do(func() error { return networkGone(root) }); err != nil {
				t.Error(err)
			}
		})
	}
}

// killedAfter does what the first NAT VM's join does up to and including
// the last of steps, then leaves as a killed vmrun would: its member file
// unlocked. It checks that the state on disk is prerecord's, which the
// steps after it did not need to write again.
func killedAfter(root string, subnet netip.Prefix, steps []string) error {
	if fwd, err := hostnet.ReadSysctl(ipForward); err != nil || fwd != "0" {
		return fmt.Errorf("a new namespace's ip_forward is %q (%v), want 0", fwd, err)
	}
	dir, err := StateDir(root)
	if err != nil {
		return err
	}
	d, err := lockDir(dir, true)
	if err != nil {
		return err
	}
	defer d.unlock()
	f, err := d.holdMember(memberInfo{VM: "dead", PID: os.Getpid()})
	if err != nil {
		return err
	}
	f.Close()
	st := shared{Subnet: subnet.String()}
	if err := d.prerecord(&st, true, true, true); err != nil {
		return err
	}
	h, err := hostnet.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	nc, err := nftables.New()
	if err != nil {
		return err
	}
	for _, s := range steps[1:] {
		switch s {
		case "bridge":
			err = createBridge(h, d, &st, subnet)
		case "table":
			err = createTable(nc, d, &st, subnet)
		case "forwarding":
			err = enableForwarding(d, &st, nil)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	onDisk, err := d.readShared()
	if err != nil {
		return err
	}
	var kinds []string
	for _, o := range onDisk.Objects {
		kinds = append(kinds, o.Kind+" "+o.Name)
	}
	want := []string{hostnet.ObjLink + " " + Bridge, hostnet.ObjSysctl + " " + bridgeRouteLocalnet, hostnet.ObjNftTable + " " + tableName, hostnet.ObjSysctl + " " + ipForward}
	if !slices.Equal(kinds, want) || onDisk.Subnet != subnet.String() {
		return fmt.Errorf("state on disk after %v: subnet %s, objects %q; want %s, %q", steps, onDisk.Subnet, kinds, subnet, want)
	}
	return nil
}

// networkGone checks that the calling thread's namespace has no NAT
// bridge, no vmrun table, ip_forward 0, and root no NAT state.
func networkGone(root string) error {
	var errs []error
	h, err := hostnet.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.LinkByName(Bridge); !hostnet.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("bridge %s: %v, want it gone", Bridge, err))
	}
	nc, err := nftables.New()
	if err != nil {
		return err
	}
	if tb, _ := nc.ListTableOfFamily(tableName, nftables.TableFamilyIPv4); tb != nil {
		errs = append(errs, fmt.Errorf("table ip %s left", tableName))
	}
	if fwd, err := hostnet.ReadSysctl(ipForward); err != nil || fwd != "0" {
		errs = append(errs, fmt.Errorf("ip_forward %q (%v), want 0", fwd, err))
	}
	if _, err := os.Stat(root + "/.nat"); !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("%s/.nat: %v, want it gone", root, err))
	}
	return errors.Join(errs...)
}

// TestCreateTableReplacesStale: createTable makes the table exclusively,
// without asking first; a table a crashed vmrun left (here with a chain of
// its own) is replaced by the ruleset, not added to.
func TestCreateTableReplacesStale(t *testing.T) {
	testutil.RequireRoot(t)
	subnet := netip.MustParsePrefix("10.232.0.0/24")
	ns := testutil.NewNetns(t, "t")
	root := t.TempDir()
	for _, stale := range []bool{false, true} {
		err := ns.Do(func() error {
			nc, err := nftables.New()
			if err != nil {
				return err
			}
			if stale {
				tb := nc.AddTable(vmrunTable())
				nc.AddChain(&nftables.Chain{Name: "stale", Table: tb})
				if err := nc.Flush(); err != nil {
					return err
				}
			}
			d, err := lockDir(root, true)
			if err != nil {
				return err
			}
			defer d.unlock()
			if err := createTable(nc, d, &shared{}, subnet); err != nil {
				return err
			}
			chains, err := nc.ListChains()
			if err != nil {
				return err
			}
			var got []string
			for _, c := range chains {
				got = append(got, c.Name)
			}
			slices.Sort(got)
			if want := []string{chainForward, chainInput, chainOutput, chainPostrouting, chainPrerouting}; !slices.Equal(got, want) {
				return fmt.Errorf("stale %v: chains %q, want %q", stale, got, want)
			}
			rules, err := RenderTable()
			if err != nil {
				return err
			}
			if len(rules) != len(baseRuleset(subnet, Bridge).Rules) {
				return fmt.Errorf("stale %v: rules %q", stale, rules)
			}
			return DeleteTable(tableObject())
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
