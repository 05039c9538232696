package main

import (
	"fmt"
	"os"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/netsetup"
)

// enforceACL applies the administrator's allow.conf to an unprivileged
// vmrun (capabilities from `vmrun setup`, not root): a plan attaching to an
// interface the ACL does not allow is refused — or, for --net auto,
// replaced by user-mode networking with a notice. Root is not limited.
func enforceACL(f netsetup.Facts, r netsetup.Request, p netsetup.Plan) (netsetup.Plan, error) {
	return applyACL(f, r, p, os.Geteuid() == 0)
}

// applyACL is enforceACL for a process that is root or not.
func applyACL(f netsetup.Facts, r netsetup.Request, p netsetup.Plan, root bool) (netsetup.Plan, error) {
	iface := netsetup.ACLInterface(p)
	if iface == "" || root {
		return p, nil
	}
	if p.Mode == netsetup.NAT {
		// Its DHCP responder, DNS forwarder and sysctls need more than the
		// capabilities `vmrun setup` grants (docs/security.md).
		return p, exitcode.Setupf("--net nat needs root (it changes sysctls and the firewall, and serves DHCP and DNS to the guests); run it with sudo, or use --net user")
	}
	acl, err := netsetup.LoadACL(netsetup.ACLPath)
	if err != nil {
		return p, exitcode.Setupf("%w: ask the administrator to fix it", err)
	}
	if acl.Allows(iface) {
		return p, nil
	}
	why := fmt.Sprintf("%s is not allowed in %s (the interfaces an administrator lets unprivileged vmrun users attach guests to)", iface, netsetup.ACLPath)
	if r.Mode != "" && r.Mode != netsetup.Auto {
		return p, exitcode.Setupf("--net %s: %s; ask the administrator to add \"allow %s\" there, or use --net user", p.Mode, why, iface)
	}
	r.Mode = netsetup.User
	up, err := netsetup.Decide(f, r)
	if err != nil {
		return p, exitcode.Wrap(exitcode.Setup, err)
	}
	up.Reason = "user-mode networking: " + why
	notice := why + "; using user-mode networking"
	if up.Notice != "" {
		notice += " (" + up.Notice + ")"
	}
	up.Notice = notice
	return up, nil
}
