package testutil

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoBareSkip walks the module's Go files and fails on a direct
// t.Skip, t.Skipf or t.SkipNow (on any receiver): a bare skip passes under
// CI=true, so a test that cannot run would vanish from CI without a
// trace. Skips go through Skipf (fails under CI) or SkipElsewhere, whose
// "by" argument must name a test that exists.
func TestNoBareSkip(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	type ref struct {
		pos token.Position
		by  string
	}
	var refs []ref
	tests := map[string]bool{} // "dir.TestName" of every test function
	helpers := filepath.Join(root, "internal", "testutil", "testutil.go")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		for _, decl := range f.Decls {
			if fd, ok := decl.(*ast.FuncDecl); ok && fd.Recv == nil && strings.HasPrefix(fd.Name.Name, "Test") && strings.HasSuffix(path, "_test.go") {
				tests[rel+"."+fd.Name.Name] = true
			}
		}
		// The local name of this package's import, if any.
		tu := ""
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == "github.com/vmrun/vmrun/internal/testutil" {
				tu = "testutil"
				if im.Name != nil {
					tu = im.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, _ := sel.X.(*ast.Ident)
			fromTestutil := pkg != nil && tu != "" && pkg.Name == tu
			switch name := sel.Sel.Name; {
			case name == "Skip" || name == "Skipf" || name == "SkipNow":
				if !fromTestutil && path != helpers {
					t.Errorf("%s: bare %s: use testutil.Skipf (it fails under CI=true) or testutil.SkipElsewhere", fset.Position(call.Pos()), name)
				}
			case name == "SkipElsewhere" && fromTestutil:
				by := ""
				if len(call.Args) >= 2 {
					if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						by, _ = strconv.Unquote(lit.Value)
					}
				}
				refs = append(refs, ref{fset.Position(call.Pos()), by})
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if !tests[r.by] {
			t.Errorf("%s: SkipElsewhere names %q: want a string literal \"dir.TestName\" naming an existing test", r.pos, r.by)
		}
	}
	if len(tests) < 50 {
		t.Errorf("found only %d tests under %s: the walk is broken", len(tests), root)
	}
}

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
