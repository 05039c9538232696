//go:build !linux

package netsetup

import (
	"context"

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
