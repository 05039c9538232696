package netsetup

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// dumpFallbackOnly are netlink functions whose documentation mentions
// ErrDumpInterrupted only for a fallback to a dump on kernels without
// IFLA_IFNAME / IFLA_IFALIAS lookups (older than any vmrun supports): they
// are single-object requests here, and need no retry.
var dumpFallbackOnly = map[string]bool{"LinkByName": true, "LinkByAlias": true}

// netlinkDumps returns the names of the functions and methods of the
// netlink library (the version go.mod requires) whose documentation says
// they can fail with ErrDumpInterrupted: the library is read, not a list
// kept by hand, so a function added by an upgrade is covered too.
func netlinkDumps(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/vishvananda/netlink").Output()
	if err != nil {
		t.Fatalf("go list the netlink module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*_linux.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("netlink sources in %q: %v", dir, err)
	}
	dumps := map[string]bool{}
	fallback := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Doc == nil || !fd.Name.IsExported() {
				continue
			}
			doc := fd.Doc.Text()
			if !strings.Contains(doc, "ErrDumpInterrupted") {
				continue
			}
			if strings.Contains(fd.Name.Name, "Subscribe") {
				continue // dumps only with ListExisting: see rawDumps
			}
			if dumpFallbackOnly[fd.Name.Name] {
				fallback[fd.Name.Name] = strings.Contains(doc, "fall back to")
				continue
			}
			dumps[fd.Name.Name] = true
		}
	}
	// The exemptions must still be what they were judged to be.
	for name := range dumpFallbackOnly {
		if !fallback[name] {
			t.Errorf("netlink.%s no longer documents ErrDumpInterrupted as a fallback only: review the exemption", name)
		}
	}
	for _, want := range []string{"LinkList", "AddrList", "RouteListFiltered", "NeighProxyList"} {
		if !dumps[want] {
			t.Fatalf("netlink.%s not found among the dumps read from %s: the parser missed them", want, dir)
		}
	}
	return dumps
}

// TestDumpsGoThroughRetry fails when a source file of netsetup or of a
// package under it uses a netlink dump (a call, or a method value) anywhere
// but inside the arguments of hostnet.RetryDump, which repeats a dump the
// kernel interrupted.
func TestDumpsGoThroughRetry(t *testing.T) {
	dumps := netlinkDumps(t)
	raw := rawDumps(t, ".", dumps)
	if len(raw) > 0 {
		t.Fatalf("netlink dumps outside RetryDump (wrap each in hostnet.RetryDump(func() (T, error) { ... })):\n%s", strings.Join(raw, "\n"))
	}
}

// TestRawDumpDetected checks the check: a raw dump in a source file is
// found, one inside RetryDump is not.
func TestRawDumpDetected(t *testing.T) {
	dir := t.TempDir()
	src := `package netsetup

func ok(h *netlink.Handle) {
	_, _ = hostnet.RetryDump(h.LinkList)
	_, _ = hostnet.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, 0) })
}

func bad(h *netlink.Handle) {
	_, _ = h.RouteListFiltered(0, nil, 0)
	f := netlink.LinkList
	_, _ = f()
	_ = netlink.LinkSubscribeWithOptions(nil, nil, netlink.LinkSubscribeOptions{ListExisting: true})
}
`
	if err := os.WriteFile(filepath.Join(dir, "x_linux.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := rawDumps(t, dir, map[string]bool{"LinkList": true, "AddrList": true, "RouteListFiltered": true})
	if len(raw) != 3 || !strings.Contains(raw[0], "RouteListFiltered") || !strings.Contains(raw[1], "LinkList") || !strings.Contains(raw[2], "ListExisting") {
		t.Fatalf("found %q, want the RouteListFiltered call, the LinkList value and ListExisting", raw)
	}
}

// rawDumps lists, as file:line: name, every reference to a dump function
// in the non-test Go files of dir and its subdirectories that is not
// inside RetryDump's arguments,
// and every subscription asking for the existing objects (ListExisting):
// its dump's interruption reaches only the error callback, and cannot be
// retried.
func rawDumps(t *testing.T, dir string, dumps map[string]bool) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var raw []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		var stack []ast.Node
		ast.Inspect(af, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return false
			}
			if sel, ok := n.(*ast.SelectorExpr); ok && dumps[sel.Sel.Name] && !insideRetry(stack, sel) {
				p := fset.Position(sel.Pos())
				raw = append(raw, p.Filename+":"+strconv.Itoa(p.Line)+": "+sel.Sel.Name)
			}
			if kv, ok := n.(*ast.KeyValueExpr); ok {
				if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "ListExisting" {
					p := fset.Position(kv.Pos())
					raw = append(raw, p.Filename+":"+strconv.Itoa(p.Line)+": ListExisting (a subscription's dump cannot be retried)")
				}
			}
			stack = append(stack, n)
			return true
		})
	}
	return raw
}

// insideRetry reports whether n (whose ancestors are stack) lies within an
// argument of a call of hostnet.RetryDump.
func insideRetry(stack []ast.Node, n ast.Node) bool {
	for i := len(stack) - 1; i >= 0; i-- {
		call, ok := stack[i].(*ast.CallExpr)
		if !ok || !isRetryDump(call.Fun) {
			continue
		}
		for _, a := range call.Args {
			if a.Pos() <= n.Pos() && n.End() <= a.End() {
				return true
			}
		}
	}
	return false
}

func isRetryDump(e ast.Expr) bool {
	switch f := e.(type) {
	case *ast.Ident: // inside hostnet
		return f.Name == "RetryDump"
	case *ast.SelectorExpr: // hostnet.RetryDump
		return f.Sel.Name == "RetryDump"
	case *ast.IndexExpr: // hostnet.RetryDump[T]
		return isRetryDump(f.X)
	}
	return false
}
