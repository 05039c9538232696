package netsetup

import (
	"bytes"
	"net"
	"testing"
)

// TestPlanWriteText: `vmrun net plan`'s lines, with and without a
// parent, passt, a MAC and a notice.
func TestPlanWriteText(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	for _, tc := range []struct {
		plan Plan
		want string
	}{
		{Plan{Mode: None, Reason: "--net none"}, "uplink:  not looked at (no network)\nmode:    none\nvhost:   false\nwhy:     --net none\n"},
		{Plan{Mode: Macvtap, Uplink: "eth0", UplinkKind: "ethernet", Parent: "eth0", MAC: mac, Vhost: true, Reason: "wired", Notice: "n"},
			"uplink:  eth0 (ethernet)\nmode:    macvtap on eth0\nmac:     52:54:00:12:34:56\nvhost:   true\nwhy:     wired\nnote:    n\n"},
		{Plan{Mode: User, UplinkKind: "none", Passt: "/usr/bin/passt", Reason: "r"},
			"uplink:  none (none)\nmode:    user through passt (/usr/bin/passt)\nvhost:   false\nwhy:     r\n"},
	} {
		var b bytes.Buffer
		if err := tc.plan.Write(&b, false); err != nil || b.String() != tc.want {
			t.Errorf("%s: %v\n got %q\nwant %q", tc.plan.Mode, err, b.String(), tc.want)
		}
	}
}
