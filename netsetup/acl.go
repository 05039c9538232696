package netsetup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ACLPath is the file listing the interfaces an unprivileged vmrun (one
// that has its capabilities from `vmrun setup`, not from root) may attach
// guests to. It is fixed at build time (-ldflags -X), never taken from
// the environment: the user of a capability-carrying binary must not be
// able to point it at a file of their own.
var ACLPath = "/etc/vmrun/allow.conf"

// ACL is a parsed allow.conf, in the spirit of qemu-bridge-helper's:
//
//	# interfaces members of group vmrun may put guests on
//	allow br0
//	allow eth0
//	deny wlan1
//	allow all
//
// A matching deny wins over any allow; "all" matches every interface; an
// interface no line allows is refused. A missing file allows nothing.
type ACL struct {
	allow, deny map[string]bool
}

// ParseACL reads an allow.conf.
func ParseACL(r io.Reader) (ACL, error) {
	a := ACL{allow: map[string]bool{}, deny: map[string]bool{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case len(f) == 2 && f[0] == "allow":
			a.allow[f[1]] = true
		case len(f) == 2 && f[0] == "deny":
			a.deny[f[1]] = true
		default:
			return ACL{}, fmt.Errorf("line %d: %q is not \"allow IFACE\", \"deny IFACE\" or a comment", n, strings.TrimSpace(sc.Text()))
		}
	}
	return a, sc.Err()
}

// LoadACL reads the allow.conf at path; a missing file is an empty ACL.
func LoadACL(path string) (ACL, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return ACL{}, nil
	}
	if err != nil {
		return ACL{}, err
	}
	defer f.Close()
	a, err := ParseACL(f)
	if err != nil {
		return ACL{}, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// Allows reports whether guests may attach to interface iface.
func (a ACL) Allows(iface string) bool {
	if a.deny[iface] || a.deny["all"] {
		return false
	}
	return a.allow[iface] || a.allow["all"]
}

// ACLInterface returns the interface of plan p an unprivileged vmrun must
// find in the ACL ("" when the mode attaches to no host interface).
func ACLInterface(p Plan) string {
	switch p.Mode {
	case Bridge, Macvtap, IPVtap, Routed, NAT:
		return p.Parent
	}
	return ""
}
