package netsetup

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// TestMACJSON: Facts and Plan write their MAC last in colon form — Facts
// leaves an unknown one out, Plan writes "" — and read back what they wrote.
func TestMACJSON(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	for _, c := range []struct {
		name string
		v    any
		want string // the JSON's end; "" for no "mac" key at all
	}{
		{"facts with a MAC", Facts{Uplink: "eth0", MAC: mac}, `,"mac":"52:54:00:12:34:56"}`},
		{"facts without one", Facts{Uplink: "eth0"}, ""},
		{"plan with a MAC", Plan{Name: "vm", MAC: mac}, `,"mac":"52:54:00:12:34:56"}`},
		{"plan without one", Plan{Name: "vm"}, `,"mac":""}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			n := strings.Count(string(b), `"mac"`)
			switch {
			case c.want == "" && n != 0:
				t.Fatalf("%s: want no mac", b)
			case c.want != "" && (!strings.HasSuffix(string(b), c.want) || n != 1):
				t.Fatalf("%s: want it to end with %s, the only mac", b, c.want)
			}
			switch v := c.v.(type) {
			case Facts:
				var back Facts
				if err := json.Unmarshal(b, &back); err != nil || back.MAC.String() != v.MAC.String() || back.Uplink != v.Uplink {
					t.Fatalf("read back %+v, %v", back, err)
				}
			case Plan:
				var back Plan
				if err := json.Unmarshal(b, &back); err != nil || back.MAC.String() != v.MAC.String() || back.Name != v.Name {
					t.Fatalf("read back %+v, %v", back, err)
				}
			}
		})
	}
	var p Plan
	if err := json.Unmarshal([]byte(`{"name":"vm","mac":"not a mac"}`), &p); err == nil {
		t.Fatal("a bad MAC was read without an error")
	}
}
