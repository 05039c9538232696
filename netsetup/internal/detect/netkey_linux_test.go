package detect

import "testing"

// TestNetworkKeyText: a wired uplink's network is its gateway's MAC; a
// Wi-Fi station's is its SSID and the gateway's MAC, so two Wi-Fi
// networks behind gateways with one MAC get keys of their own, and an
// SSID with spaces, quotes or bytes that are not UTF-8 stays one quoted
// word.
func TestNetworkKeyText(t *testing.T) {
	gw := "02:00:00:00:00:01"
	tests := []struct{ ssid, want string }{
		{"", "gateway 02:00:00:00:00:01"},
		{"home", `ssid "home" gateway 02:00:00:00:00:01`},
		{"home-5G", `ssid "home-5G" gateway 02:00:00:00:00:01`},
		{`Café "guest" wifi`, `ssid "Café \"guest\" wifi" gateway 02:00:00:00:00:01`},
		{"\xff\x00", `ssid "\xff\x00" gateway 02:00:00:00:00:01`},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := networkKey(gw, tt.ssid)
		if got != tt.want {
			t.Errorf("networkKey(%q, %q) = %q, want %q", gw, tt.ssid, got, tt.want)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("SSIDs %q and %q share the key %q", other, tt.ssid, got)
		}
		seen[got] = tt.ssid
	}
}
