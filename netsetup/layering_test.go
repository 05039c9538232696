package netsetup

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/vmrun/vmrun/"

// modePackages are the packages of the network modes, relative to the
// module. No one of them may depend, directly or not, on another, nor on
// the root or on the packages that sit above the modes (gc, doctor).
var modePackages = []string{"netsetup/tap", "netsetup/routed", "netsetup/ipvtap", "netsetup/user", "netsetup/nat"}

// aboveModes may import the mode packages; no mode package imports them.
var aboveModes = []string{"netsetup", "netsetup/gc", "netsetup/doctor", "netsetup/watch"}

// TestModesImportOnlyDownward walks the module's import graph (every
// non-test Go file, whatever its build constraint) from each mode package.
func TestModesImportOnlyDownward(t *testing.T) {
	for _, mode := range modePackages {
		t.Run(filepath.Base(mode), func(t *testing.T) {
			deps := moduleDeps(t, mode, map[string]bool{})
			for _, other := range append(slices.Clone(modePackages), aboveModes...) {
				if other != mode && deps[other] {
					t.Errorf("%s depends on %s: what two modes share belongs in internal/hostnet", mode, other)
				}
			}
		})
	}
}

// TestEveryPackageHasALayer: a new package under netsetup/ is either a
// mode (and in modePackages), above the modes, or internal.
func TestEveryPackageHasALayer(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs int
	for _, e := range entries {
		p := "netsetup/" + e.Name()
		if !e.IsDir() || e.Name() == "internal" || e.Name() == "testdata" {
			continue
		}
		dirs++
		if !slices.Contains(modePackages, p) && !slices.Contains(aboveModes, p) {
			t.Errorf("package %s is neither in modePackages nor in aboveModes", p)
		}
	}
	if dirs < len(modePackages) {
		t.Errorf("found %d packages under netsetup/, fewer than the %d modes", dirs, len(modePackages))
	}
}

// moduleDeps adds to seen the module packages pkg imports, transitively.
func moduleDeps(t *testing.T, pkg string, seen map[string]bool) map[string]bool {
	t.Helper()
	dir := filepath.Join("..", filepath.FromSlash(pkg))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("package %s: no Go files in %s (%v)", pkg, dir, err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			dep, ok := strings.CutPrefix(path, module)
			if !ok || seen[dep] {
				continue
			}
			seen[dep] = true
			moduleDeps(t, dep, seen)
		}
	}
	return seen
}
