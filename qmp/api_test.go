package qmp

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoUnusedAPI fails on an exported constant, function or method of
// this package that no product code of the module uses: dead code that
// tests alone keep alive. (Methods are matched by name, so a method whose
// name other code also uses escapes the check; nothing unused is reported
// by mistake.)
func TestNoUnusedAPI(t *testing.T) {
	fset := token.NewFileSet()
	self, err := parser.ParseFile(fset, "qmp.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]string{} // name -> what
	declPos := map[token.Pos]bool{}
	for _, d := range self.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if !d.Name.IsExported() {
				continue
			}
			declPos[d.Name.Pos()] = true
			if d.Recv != nil {
				declared[d.Name.Name] = "method"
			} else {
				declared[d.Name.Name] = "function"
			}
		case *ast.GenDecl:
			if d.Tok != token.CONST {
				continue
			}
			for _, sp := range d.Specs {
				for _, n := range sp.(*ast.ValueSpec).Names {
					if n.IsExported() {
						declPos[n.Pos()] = true
						declared[n.Name] = "constant"
					}
				}
			}
		}
	}
	used := map[string]bool{}
	// Inside this package, a use by other code counts; a struct field of
	// the same name, or a use within the declaration itself, does not.
	ast.Inspect(self, func(n ast.Node) bool {
		if f, ok := n.(*ast.Field); ok {
			for _, id := range f.Names {
				declPos[id.Pos()] = true
			}
		}
		return true
	})
	for _, d := range self.Decls {
		owner := ""
		if fd, ok := d.(*ast.FuncDecl); ok {
			owner = fd.Name.Name
		}
		ast.Inspect(d, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && !declPos[id.Pos()] && id.Name != owner {
				used[id.Name] = true
			}
			return true
		})
	}
	const path = "github.com/vmrun/vmrun/qmp"
	err = filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != ".." || p == filepath.Join("..", "qmp")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		name := ""
		for _, im := range f.Imports {
			if v, _ := strconv.Unquote(im.Path.Value); v == path {
				name = "qmp"
				if im.Name != nil {
					name = im.Name.Name
				}
			}
		}
		if name == "" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == name {
					used[sel.Sel.Name] = true // qmp.Connect, qmp.EventStop
				} else if declared[sel.Sel.Name] == "method" {
					used[sel.Sel.Name] = true // c.Quit
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, what := range declared {
		if !used[name] {
			t.Errorf("%s %s is not used outside tests: remove it", what, name)
		}
	}
}
