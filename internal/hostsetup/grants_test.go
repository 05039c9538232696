package hostsetup

import "testing"

// TestSetupCaps: setup grants exactly what the unprivileged modes need,
// named as setcap names them, and numbered as the kernel numbers them.
func TestSetupCaps(t *testing.T) {
	if got := CapsText(); got != "cap_net_admin,cap_net_raw,cap_mknod" {
		t.Errorf("setup grants %s", got)
	}
	if got := Caps(); len(got) != 3 || got[0] != 12 || got[1] != 13 || got[2] != 27 {
		t.Errorf("setup grants capabilities %v, want [12 13 27]", got)
	}
}
