package netsetup

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// requestErrors classifies every sentinel of this package: true when it
// refuses the request itself (exit 1), false when the host lacks something
// (exit 2). A new sentinel must be added here (TestEverySentinelClassified).
var requestErrors = map[string]struct {
	err     error
	request bool
}{
	"ErrBadRequest":      {ErrBadRequest, true},
	"ErrUnknownMode":     {ErrUnknownMode, true},
	"ErrNoInterface":     {ErrNoInterface, true},
	"ErrNotBridge":       {ErrNotBridge, true},
	"ErrUnsuitable":      {ErrUnsuitable, true},
	"ErrNotImplemented":  {ErrNotImplemented, false},
	"ErrNoUplink":        {ErrNoUplink, false},
	"ErrLinkDown":        {ErrLinkDown, false},
	"ErrNoPrivilege":     {ErrNoPrivilege, false},
	"ErrNoKernelSupport": {ErrNoKernelSupport, false},
	"ErrForeignLink":     {ErrForeignLink, false},
	"ErrVerify":          {ErrVerify, false},
	"ErrUnknownObject":   {ErrUnknownObject, false},
	"ErrUnsupported":     {ErrUnsupported, false},
	"ErrNoAddress":       {ErrNoAddress, false},
	"ErrNoLease":         {ErrNoLease, false},
	"ErrNotAllowed":      {ErrNotAllowed, false},
	"ErrNoSubnet":        {ErrNoSubnet, false},
	"ErrSubnetFull":      {ErrSubnetFull, false},
}

func TestIsRequestError(t *testing.T) {
	for name, c := range requestErrors {
		for _, err := range []error{
			c.err,
			hostnet.Refuse(c.err, "a sentence about %s", name),
			fmt.Errorf("context: %w", hostnet.Refuse(c.err, "a sentence")),
		} {
			if got := IsRequestError(err); got != c.request {
				t.Errorf("%s (%v): IsRequestError = %v, want %v", name, err, got, c.request)
			}
		}
	}
	for _, err := range []error{nil, errors.New("netlink: permission denied")} {
		if IsRequestError(err) {
			t.Errorf("%v is a request error", err)
		}
	}
	// A plan's real refusal: user mode with --guest-ip.
	_, err := Decide(Facts{Uplink: "eth0", Kind: UplinkEthernet}, Request{Mode: User, Name: "vm", Queues: 1, GuestIP: &net.IPNet{IP: net.IPv4(10, 0, 0, 5), Mask: net.CIDRMask(24, 32)}})
	if err == nil || !IsRequestError(err) {
		t.Errorf("--net user --guest-ip: %v is not a request error", err)
	}
}

// TestEverySentinelClassified: every exported Err... variable of the
// package's sources has its row in requestErrors.
func TestEverySentinelClassified(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, sp := range gd.Specs {
				for _, n := range sp.(*ast.ValueSpec).Names {
					if strings.HasPrefix(n.Name, "Err") {
						if _, ok := requestErrors[n.Name]; !ok {
							t.Errorf("%s (%s) is not classified: add it to requestErrors and decide whether IsRequestError holds", n.Name, f)
						}
					}
				}
			}
		}
	}
}
