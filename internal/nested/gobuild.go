package nested

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
)

// BuildTest compiles the tests of package pkg (an import path, or a
// directory relative to the calling test's package) into a static
// linux/amd64 binary, `CGO_ENABLED=0 go test -c`, for a Payload. It returns
// the binary's path in a temporary directory; a build failure fails the test.
func BuildTest(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), path.Base(pkg)+".test")
	goBuild(t, "test", "-c", "-o", out, pkg)
	return out
}

// BuildCommand compiles the main package pkg (e.g.
// "github.com/vmrun/vmrun/cmd/vmrun") into a static linux/amd64 binary,
// `CGO_ENABLED=0 go build`, and returns its path in a temporary directory.
func BuildCommand(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), path.Base(pkg))
	goBuild(t, "build", "-o", out, pkg)
	return out
}

func goBuild(t testing.TB, args ...string) {
	t.Helper()
	gotool := testutil.RequireCmd(t, "go")
	cmd := exec.Command(gotool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nested: go %v: %v\n%s", args, err, out)
	}
}
