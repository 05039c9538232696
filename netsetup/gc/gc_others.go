//go:build !linux

package gc

import (
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Undo is only implemented on Linux.
func Undo(objs []rundir.Object) error {
	if len(objs) == 0 {
		return nil
	}
	return hostnet.ErrUnsupported
}

// GCState is only implemented on Linux.
func GCState(dir string, st *rundir.State) error {
	if st == nil || len(st.Objects) == 0 {
		return nil
	}
	return hostnet.ErrUnsupported
}

// GC is only implemented on Linux.
func GC(root string, logf func(string, ...any)) ([]string, error) { return nil, hostnet.ErrUnsupported }

// Command is `vmrun gc` where network namespaces are not looked into.
func Command(st *rundir.State) string { return "vmrun gc" }
