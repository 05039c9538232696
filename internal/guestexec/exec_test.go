package guestexec

import (
	"reflect"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
)

func TestParseExecArgs(t *testing.T) {
	a, err := ParseArgs([]string{"web", "--env", "A=1", "--env=B=x=y", "--cwd", "/src", "--timeout", "30s", "--timestamps", "--", "make", "-C", "/src", "--", "test"})
	if err != nil {
		t.Fatal(err)
	}
	want := Args{Name: "web", Env: []string{"A=1", "B=x=y"}, Cwd: "/src", Timeout: 30 * time.Second, Timestamps: true,
		Argv: []string{"make", "-C", "/src", "--", "test"}}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got %+v\nwant %+v", a, want)
	}
	a, err = ParseArgs([]string{"web", "uname", "-a"})
	if err != nil || !reflect.DeepEqual(a.Argv, []string{"uname", "-a"}) {
		t.Fatalf("without --: %+v %v", a, err)
	}
	for _, bad := range [][]string{
		{}, {"web"}, {"web", "--"}, {"--bogus", "web", "--", "true"}, {"web", "--env", "1A=x", "--", "true"},
		{"web", "--env", "noequals", "--", "true"}, {"web", "--cwd", "rel", "--", "true"}, {"web", "--timeout", "soon", "--", "true"},
		{"web", "--cwd"},
	} {
		if _, err := ParseArgs(bad); exitcode.Of(err) != exitcode.Usage {
			t.Errorf("%q: err %v, want a usage error", bad, err)
		}
	}
}
