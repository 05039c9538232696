package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}
	for _, c := range []struct {
		commit   string
		settings []debug.BuildSetting
		want     string
	}{
		{"abc1234", vcs, "abc1234"}, // make build's stamp wins
		{"", vcs, "0123456789ab-dirty"},
		{"", vcs[:1], "0123456789ab"},
		{"", nil, "unknown commit"},
	} {
		if got := describe(c.commit, c.settings); got != c.want {
			t.Errorf("describe(%q, %v) = %q, want %q", c.commit, c.settings, got, c.want)
		}
	}
	if v := Version("abc1234"); !strings.HasPrefix(v, "abc1234 (go") {
		t.Errorf("Version = %q, want the commit and the Go version", v)
	}
}
