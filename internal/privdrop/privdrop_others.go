//go:build !linux

package privdrop

import (
	"errors"
	"os"
	"syscall"
)

var errUnsupported = errors.New("dropping privileges is only implemented on Linux")

// Credential is what exec.Cmd's SysProcAttr needs to start a process as u.
func (u User) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: append([]uint32{}, u.Groups...)}
}

// Open is not supported outside Linux.
func (u User) Open(path string, flag int) (*os.File, error) { return nil, errUnsupported }

// Access is not supported outside Linux.
func (u User) Access(path string, mode uint32) error { return errUnsupported }

// Reopen is not supported outside Linux.
func (u User) Reopen(f *os.File) error { return errUnsupported }

// Confine is not supported outside Linux.
func Confine(bounding bool) error { return errUnsupported }
