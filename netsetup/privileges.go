package netsetup

import (
	"fmt"
	"strings"
)

// Privilege is a Linux capability that a mode's set-up uses.
type Privilege string

// The capabilities vmrun's set-ups use (docs/security.md says what each
// allows and where vmrun raises it).
const (
	// PrivNetAdmin creates and configures links, addresses, routes,
	// neighbour entries, nftables and the network sysctls.
	PrivNetAdmin Privilege = "CAP_NET_ADMIN"
	// PrivNetRaw opens packet and raw ICMPv6 sockets: routed mode's DHCP
	// client and responder, its router advertiser, ipvtap's learner, and
	// (when permitted; not needed) the watcher of the guest's addresses on
	// bridge and macvtap.
	PrivNetRaw Privilege = "CAP_NET_RAW"
	// PrivMknod makes a macvtap's private character-device node.
	PrivMknod Privilege = "CAP_MKNOD"
	// PrivSysAdmin makes ipvtap's private network namespace (unshare) and
	// mounts its sysfs; vmrun setup never grants it.
	PrivSysAdmin Privilege = "CAP_SYS_ADMIN"
)

// SetupGrants returns the capabilities `vmrun setup` gives the installed
// binary (permitted only; vmrun raises them per thread around link work).
func SetupGrants() []Privilege { return []Privilege{PrivNetAdmin, PrivNetRaw, PrivMknod} }

// Number is the capability's number in Linux (linux/capability.h).
func (p Privilege) Number() int {
	switch p {
	case PrivNetAdmin:
		return 12
	case PrivNetRaw:
		return 13
	case PrivSysAdmin:
		return 21
	case PrivMknod:
		return 27
	}
	return -1
}

// Needs returns the capabilities the set-up of mode uses, as measured by
// running each set-up with only these (the unprivileged e2e and rig
// tests): a mode is chosen only when the process has all of them.
func Needs(m Mode) []Privilege {
	switch m {
	case Bridge:
		return []Privilege{PrivNetAdmin}
	case Macvtap:
		return []Privilege{PrivNetAdmin, PrivMknod}
	case Routed:
		return []Privilege{PrivNetAdmin, PrivNetRaw}
	case IPVtap:
		return []Privilege{PrivNetAdmin, PrivNetRaw, PrivMknod, PrivSysAdmin}
	case NAT:
		// Beyond its packet socket, NAT binds port 53 and is root's only
		// (docs/security.md): CAP_SYS_ADMIN stands for "root" here.
		return []Privilege{PrivNetAdmin, PrivNetRaw, PrivSysAdmin}
	}
	return nil
}

// has reports whether the process has capability p (effective, or
// permitted so that vmrun can raise it).
func has(c Caps, p Privilege) bool {
	switch p {
	case PrivNetAdmin:
		return c.NetAdmin
	case PrivNetRaw:
		return c.NetRaw
	case PrivMknod:
		return c.Mknod
	case PrivSysAdmin:
		return c.SysAdmin
	}
	return false
}

// missingPrivs returns the capabilities mode's set-up needs that the process
// does not have (c), in the order Needs lists them.
func missingPrivs(c Caps, m Mode) []Privilege {
	var out []Privilege
	for _, p := range Needs(m) {
		if !has(c, p) {
			out = append(out, p)
		}
	}
	return out
}

// grantedBySetup reports whether `vmrun setup` grants every one of ps.
func grantedBySetup(ps []Privilege) bool {
	for _, p := range ps {
		found := false
		for _, g := range SetupGrants() {
			found = found || g == p
		}
		if !found {
			return false
		}
	}
	return true
}

// joinPrivs lists ps: "A", "A and B", "A, B and C".
func joinPrivs(ps []Privilege) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// privilegeHint says how to get what mode needs: `vmrun setup` when it
// grants all of it, else root.
func privilegeHint(m Mode) string {
	if grantedBySetup(Needs(m)) {
		return fmt.Sprintf("run vmrun as root, or have an administrator run `vmrun setup` once (it grants %s) and add you to group vmrun", joinPrivs(SetupGrants()))
	}
	return "run vmrun as root"
}

// missingPrivilege says which capabilities mode lacks and how to get
// them, or "".
func missingPrivilege(c Caps, m Mode) string {
	ps := missingPrivs(c, m)
	if len(ps) == 0 {
		return ""
	}
	return fmt.Sprintf("vmrun lacks %s (%s)", joinPrivs(ps), privilegeHint(m))
}
