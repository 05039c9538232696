package netsetup

import "testing"

// TestEvidence: each source in words, the DHCP server named when known.
func TestEvidence(t *testing.T) {
	for _, tc := range []struct{ source, server, want string }{
		{SourceDHCP, "192.168.1.1", "DHCP from 192.168.1.1"},
		{SourceDHCP, "", "DHCP"},
		{SourceARP, "", "ARP"},
		{SourceNDP, "", "NDP"},
		{SourceStatic, "", "--guest-ip"},
		{SourceAgent, "", "the guest agent"},
		{SourceTraffic, "", "seen in its traffic"},
	} {
		if got := Evidence(tc.source, tc.server); got != tc.want {
			t.Errorf("Evidence(%q, %q) = %q, want %q", tc.source, tc.server, got, tc.want)
		}
	}
}
