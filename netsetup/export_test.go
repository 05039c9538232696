package netsetup

import "github.com/vmrun/vmrun/netsetup/internal/hostnet"

// LinkObject records a link, for the tests (package netsetup_test) that
// undo a link the way a crashed vmrun's state file would name it.
var LinkObject = hostnet.LinkObject
