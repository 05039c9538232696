//go:build !linux

package netsetup

import (
	"context"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/user"
)

// Detect is only implemented on Linux.
func Detect(ctx context.Context, r Request) (Facts, error) { return Facts{}, ErrUnsupported }

// Apply is only implemented on Linux; user mode and none work everywhere.
func Apply(ctx context.Context, p Plan, rec Recorder) (*Attachment, error) {
	switch p.Mode {
	case User:
		return user.Slirp(p.MAC, p.Forwards), nil
	case None:
		return noneAttachment(), nil
	}
	return nil, ErrUnsupported
}

// Undo is only implemented on Linux.
func Undo(objs []rundir.Object) error {
	if len(objs) == 0 {
		return nil
	}
	return ErrUnsupported
}

// GCState is only implemented on Linux.
func GCState(dir string, st *rundir.State) error {
	if st == nil || len(st.Objects) == 0 {
		return nil
	}
	return ErrUnsupported
}

// GC is only implemented on Linux.
func GC(root string, logf func(string, ...any)) ([]string, error) { return nil, ErrUnsupported }
