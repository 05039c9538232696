package netsetup

import "github.com/vmrun/vmrun/netsetup/internal/hostnet"

// The records of host objects, for the tests (package netsetup_test) that
// write a state file the way a crashed vmrun would have left it.
var (
	RouteObject   = hostnet.RouteObject
	NeighObject   = hostnet.NeighObject
	AddrObject    = hostnet.AddrObject
	LinkObject    = hostnet.LinkObject
	SysctlObject  = hostnet.SysctlObject
	ProcessObject = hostnet.ProcessObject
)
