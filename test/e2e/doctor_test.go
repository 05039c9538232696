package e2e

import (
	"encoding/json"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
)

// TestDoctorExitCode: exit 0 where --net auto gets a layer-2 mode (a
// namespace whose uplink is a veth: macvtap), 1 where it does not (no
// default route: user mode).
func TestDoctorExitCode(t *testing.T) {
	testutil.RequireRoot(t)
	l := newLAN(t, false)
	lone := testutil.NewNetns(t, "dr")
	for _, tt := range []struct {
		ns   *testutil.Netns
		code int
		mode string
	}{{l.Host, 0, "macvtap"}, {lone, 1, "user"}} {
		out, errOut, code := RunVMRun(t, tt.ns, runtimeDir(t), "doctor", "--json")
		var r struct {
			OK   bool
			Auto struct{ Mode string }
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != tt.code || r.OK != (tt.code == 0) || r.Auto.Mode != tt.mode {
			t.Errorf("in %s: exit %d, %+v, %v; want exit %d with %s\n%s%s", tt.ns.Name, code, r, err, tt.code, tt.mode, out, errOut)
		}
	}
}
