package netsetup

import (
	"strings"
	"testing"
)

func TestACL(t *testing.T) {
	a, err := ParseACL(strings.NewReader("# comment\n\nallow br0  # the LAN bridge\nallow eth0\ndeny eth0\n  allow   wlan0\n"))
	if err != nil {
		t.Fatal(err)
	}
	for iface, want := range map[string]bool{"br0": true, "wlan0": true, "eth0": false, "eth1": false, "all": false} {
		if got := a.Allows(iface); got != want {
			t.Errorf("%s: %v, want %v", iface, got, want)
		}
	}
	all, _ := ParseACL(strings.NewReader("allow all\ndeny wlan1\n"))
	if !all.Allows("anything") || all.Allows("wlan1") {
		t.Error("allow all / deny wlan1")
	}
	none, _ := ParseACL(strings.NewReader("allow all\ndeny all\n"))
	if none.Allows("br0") {
		t.Error("deny all must win")
	}
	if (ACL{}).Allows("br0") {
		t.Error("an empty ACL allows")
	}
	for _, bad := range []string{"permit br0\n", "allow\n", "allow br0 br1\n"} {
		if _, err := ParseACL(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if a, err := LoadACL("/nonexistent/allow.conf"); err != nil || a.Allows("br0") {
		t.Errorf("missing file: %v", err)
	}
	for mode, want := range map[Mode]string{Bridge: "br0", Macvtap: "br0", NAT: "br0", User: "", None: ""} {
		if got := ACLInterface(Plan{Mode: mode, Parent: "br0"}); got != want {
			t.Errorf("%s: %q", mode, got)
		}
	}
}
