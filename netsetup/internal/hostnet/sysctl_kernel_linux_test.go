package hostnet

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
)

// TestSetSysctlRecorded, in a network namespace of its own: a sysctl that
// has another value is recorded with its old value before it is written,
// one that has the value already is neither recorded nor written, and
// RestoreSysctl puts the old value back (and refuses a path outside
// /proc/sys; a sysctl that is gone needs no restoring).
func TestSetSysctlRecorded(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "sc")
	const p = "net/ipv4/conf/lo/forwarding"
	// fn runs on the namespace's own thread: it returns what failed.
	err := ns.Do(func() error {
		old, err := ReadSysctl(p)
		if err != nil {
			return err
		}
		want := map[string]string{"0": "1", "1": "0"}[old]
		var recs []rundir.Object
		record := func(o rundir.Object) error { recs = append(recs, o); return nil }
		if changed, err := SetSysctlRecorded(record, p, want); err != nil || !changed {
			return fmt.Errorf("SetSysctlRecorded(%s=%s) = %v, %w; want changed", p, want, changed, err)
		}
		if len(recs) != 1 || recs[0].Kind != ObjSysctl || recs[0].Name != p || recs[0].Old != old {
			return fmt.Errorf("recorded %+v, want one sysctl record of %s with old value %s", recs, p, old)
		}
		if got, err := ReadSysctl(p); err != nil || got != want {
			return fmt.Errorf("%s = %q, %w after the write; want %s", p, got, err, want)
		}
		if changed, err := SetSysctlRecorded(record, p, want); err != nil || changed || len(recs) != 1 {
			return fmt.Errorf("setting it again: changed %v, %w, %d records; want no change and no record", changed, err, len(recs))
		}
		if err := RestoreSysctl(recs[0].Name, recs[0].Old); err != nil {
			return err
		}
		if got, err := ReadSysctl(p); err != nil || got != old {
			return fmt.Errorf("%s = %q, %w after the restore; want %s", p, got, err, old)
		}
		if err := RestoreSysctl("net/ipv4/conf/vmr-gone/forwarding", "1"); err != nil {
			return fmt.Errorf("restoring the sysctl of a link that is gone: %w", err)
		}
		if err := RestoreSysctl("../../etc/hostname", "x"); err == nil {
			return errors.New("RestoreSysctl wrote outside /proc/sys")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
