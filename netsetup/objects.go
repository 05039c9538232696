package netsetup

import "github.com/vmrun/vmrun/netsetup/internal/hostnet"

// Kinds of recorded objects (rundir.Object.Kind); see hostnet for what
// each records. Undo dispatches on them.
const (
	ObjLink      = hostnet.ObjLink
	ObjSysctl    = hostnet.ObjSysctl
	ObjProcess   = hostnet.ObjProcess
	ObjRoute     = hostnet.ObjRoute
	ObjNeigh     = hostnet.ObjNeigh
	ObjAddr      = hostnet.ObjAddr
	ObjNftTable  = hostnet.ObjNftTable
	ObjNATMember = hostnet.ObjNATMember
)
