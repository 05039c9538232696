package hostnet

import "testing"

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		"/run/netns/ci":                "/run/netns/ci",
		`/run/netns/a\040b`:            "/run/netns/a b",
		`/var/run/docker/netns/x\134y`: `/var/run/docker/netns/x\y`,
		`/tmp/end\04`:                  `/tmp/end\04`, // too short to be an escape
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}
