package netsetup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// ACLPath is the default of the file listing the interfaces an
// unprivileged vmrun (one that has its capabilities from `vmrun setup`,
// not from root) may attach guests to. The CLI fixes the path it uses at
// build time (-ldflags -X), never from the environment: the user of a
// capability-carrying binary must not be able to point it at a file of
// their own.
const ACLPath = "/etc/vmrun/allow.conf"

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

// Limits is what an administrator lets an unprivileged vmrun do: attach
// guests only to the interfaces of the ACL read from Path. Err is why the
// ACL could not be read; it refuses only a plan that needs the ACL.
type Limits struct {
	ACL  ACL
	Path string
	Err  error
}

// LoadLimits reads the ACL at path into Limits.
func LoadLimits(path string) *Limits {
	acl, err := LoadACL(path)
	return &Limits{ACL: acl, Path: path, Err: err}
}

// limit applies l to plan p, decided for request r on facts f: a plan
// attaching to an interface the ACL does not allow is refused — or, for
// --net auto, replaced by user-mode networking with a notice. NAT is
// root's only (its DHCP responder, DNS forwarder and sysctls need more
// than `vmrun setup` grants; docs/security.md).
func (l *Limits) limit(f Facts, r Request, p Plan) (Plan, error) {
	iface := ACLInterface(p)
	switch {
	case iface == "":
		return p, nil
	case p.Mode == NAT:
		return Plan{}, hostnet.Refuse(ErrNoPrivilege, "--net nat needs root (it changes sysctls and the firewall, and serves DHCP and DNS to the guests); run it with sudo, or use --net user")
	case l.Err != nil:
		return Plan{}, fmt.Errorf("%w: ask the administrator to fix it", l.Err)
	case l.ACL.Allows(iface):
		return p, nil
	}
	why := fmt.Sprintf("%s is not allowed in %s (the interfaces an administrator lets unprivileged vmrun users attach guests to)", iface, l.Path)
	if r.mode() != Auto {
		return Plan{}, hostnet.Refuse(ErrNotAllowed, "--net %s: %s; ask the administrator to add \"allow %s\" there, or use --net user", p.Mode, why, iface)
	}
	r.Mode, r.Limits = User, nil
	up, err := Decide(f, r)
	if err != nil {
		return Plan{}, err
	}
	up.Reason = "user-mode networking: " + why
	notice := why + "; using user-mode networking"
	if up.Notice != "" {
		notice += " (" + up.Notice + ")"
	}
	up.Notice = notice
	return up, nil
}
