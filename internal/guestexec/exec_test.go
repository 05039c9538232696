package guestexec

import (
	"context"
	"os"
	"path/filepath"
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

// TestPendingPIDs: the pids a session leaves for the next one in the exec
// lock's file, replaced each time (a shorter list leaves no old digits).
func TestPendingPIDs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	f, err := lockExec(ctx, dir, "vm", func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := pendingPIDs(f); got != nil {
		t.Fatalf("new lock file: %v", got)
	}
	savePending(f, []int{12345, 7})
	if got := pendingPIDs(f); !reflect.DeepEqual(got, []int{12345, 7}) {
		t.Fatalf("got %v", got)
	}
	savePending(f, []int{9})
	if got := pendingPIDs(f); !reflect.DeepEqual(got, []int{9}) {
		t.Fatalf("after a shorter list: %v", got)
	}
	if err := os.WriteFile(filepath.Join(dir, execLock), []byte("x\n-3\n42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := pendingPIDs(f); !reflect.DeepEqual(got, []int{42}) {
		t.Fatalf("with bad lines: %v", got)
	}
}
