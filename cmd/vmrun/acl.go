package main

import (
	"os"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/netsetup"
)

// aclPath is the administrator's interface allow-list for an unprivileged
// vmrun: netsetup.ACLPath, unless vmrun is built with -ldflags
// "-X main.aclPath=...". It is fixed at build time, never taken from the
// environment or the command line: the user of a capability-carrying
// binary must not be able to point it at a file of their own.
var aclPath = netsetup.ACLPath

// limits is what the administrator lets this vmrun do: for an unprivileged
// vmrun (capabilities from `vmrun setup`, not root) the allow-list at
// aclPath, which netsetup.Decide applies; nil for root, whom nothing
// limits.
func limits() *netsetup.Limits {
	if os.Geteuid() == 0 {
		return nil
	}
	return netsetup.LoadLimits(aclPath)
}

// planRequest is the network request of spec, within limits().
func planRequest(spec config.Spec) netsetup.Request {
	return netplan.Request(spec, limits())
}
