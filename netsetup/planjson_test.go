package netsetup

import (
	"encoding/json"
	"net"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
)

// TestPlanJSONKeys: the plan's JSON (docs/json.md) has every key in every
// mode, on every kind of uplink, also where a key does not apply.
func TestPlanJSONKeys(t *testing.T) {
	keys := []string{"name", "mode", "parent", "uplink", "uplink_kind", "network", "mac", "mtu", "vhost", "queues",
		"link_name", "forwards", "passt", "nat", "gateway", "no_host_link", "reason", "notice", "guest_addr", "guest_ip"}
	schema := map[string][]string{
		"":           keys,
		"forwards[]": {"proto", "host_addr", "host_port", "guest_port"},
		"nat":        {"subnet", "resolv_conf"},
	}
	fw := []Forward{{Proto: "tcp", HostPort: 8080, GuestPort: 80}}
	cases := []struct {
		name string
		f    Facts
		r    Request
	}{
		{"auto, wired", ethFacts(), Request{}},
		{"auto, bridge", bridgeFacts(), Request{}},
		{"auto, bridge port", portFacts(), Request{}},
		{"auto, Wi-Fi", wifiFacts(WifiStation, false), Request{}},
		{"auto, no route", noRouteFacts(), Request{}},
		{"user with a forward", ethFacts(), Request{Mode: User, Forwards: fw}},
		{"user, no passt", with(ethFacts(), func(f *Facts) { f.Caps.Passt = "" }), Request{Mode: User}},
		{"none", ethFacts(), Request{Mode: None}},
		{"nat", ethFacts(), Request{Mode: NAT, Forwards: fw, NAT: NATOptions{Subnet: "10.201.0.0/24"}}},
		{"routed, leased", lanFacts(), Request{Mode: Routed}},
		{"routed, static", lanFacts(), Request{Mode: Routed, GuestIP: &net.IPNet{IP: net.IPv4(10, 77, 0, 60), Mask: net.CIDRMask(24, 32)}}},
	}
	for _, c := range cases {
		c.r.Name, c.r.Queues = "vm1", 1
		p, err := Decide(c.f, c.r)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		testutil.CheckJSONSchema(t, c.name, b, schema)
	}
}
