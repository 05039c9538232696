package guestwait

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

func TestPreferIPv4(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "invalid IP"},
		{[]string{"fd00::5"}, "fd00::5"},
		{[]string{"fd00::5", "10.0.0.5"}, "10.0.0.5"},
		{[]string{"10.0.0.6", "10.0.0.5"}, "10.0.0.6"},
	} {
		var as []netip.Addr
		for _, s := range c.in {
			as = append(as, netip.MustParseAddr(s))
		}
		if got := PreferIPv4(as).String(); got != c.want {
			t.Errorf("PreferIPv4(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestWaitEnds: no such VM is a usage error; a VM without an address
// runs into the deadline; a VM whose vmrun is gone is a setup error.
func TestWaitEnds(t *testing.T) {
	root := t.TempDir()
	if _, err := New(root, "nosuch", false, time.Time{}); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("no such VM: %v (exit %d)", err, exitcode.Of(err))
	}
	d, _, err := rundir.Create(root, "quiet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	if err := d.Update(func(s *rundir.State) { *s = rundir.State{Name: "quiet", PID: 1} }); err != nil {
		t.Fatal(err)
	}
	w, err := New(root, "quiet", false, time.Now().Add(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if a, err := w.Wait(); !errors.Is(err, ErrTimeout) {
		t.Errorf("no address: %v, %v; want ErrTimeout", a, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if a, err := w.Wait(); err == nil || exitcode.Of(err) != exitcode.Setup {
		t.Errorf("VM gone: %v, %v (exit %d); want a setup error", a, err, exitcode.Of(err))
	}
}
