package netsetup_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// TestNextGenerationBesideTheFirst: while a VM's macvtap (with its host
// link) exists on up0, the next generation of its plan — a macvtap on
// another uplink, what a switch makes before it removes the first — is
// created beside it under names of its own, and each undo removes only
// its own links.
func TestNextGenerationBesideTheFirst(t *testing.T) {
	l := newLab(t)
	lan2 := testutil.NewNetns(t, "l2")
	testutil.Veth(t, l.host, "up1", lan2, "lan0")
	l.before = l.host.Links(t)
	first := macvtapPlan(t, l, "gen", 1)
	second := l.plan(t, netsetup.Request{Mode: netsetup.Macvtap, Parent: "up1", Name: "gen", Queues: 1}).WithGen(first.Gen + 1)
	if second.LinkName == first.LinkName {
		t.Fatalf("generation 1's link name %s is generation 0's", second.LinkName)
	}
	ctx := ctxT(t, 30*time.Second)
	a, err := l.apply(t, ctx, first, &memRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.apply(t, ctx, second, &memRecorder{})
	if err != nil {
		t.Fatalf("the next generation beside the first: %v", err)
	}
	if _, err := l.link(t, first.LinkName); err != nil {
		t.Fatalf("generation 0's %s went when generation 1 was made: %v", first.LinkName, err)
	}
	owned := func() []string {
		var out []string
		for _, n := range l.host.Links(t) {
			if !slices.Contains(l.before, n) {
				out = append(out, n)
			}
		}
		return out
	}
	if got := owned(); len(got) != 4 {
		t.Errorf("links of both generations %v, want a macvtap and a host link each", got)
	}
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	for _, n := range owned() {
		if !strings.HasPrefix(n, second.LinkName[:len(second.LinkName)-1]) {
			t.Errorf("after generation 0's undo, %s is left, which is not generation 1's", n)
		}
	}
	if _, err := l.link(t, second.LinkName); err != nil {
		t.Fatalf("generation 0's undo removed generation 1's %s: %v", second.LinkName, err)
	}
	if err := b.Undo(); err != nil {
		t.Fatal(err)
	}
	l.assertClean(t)
}
