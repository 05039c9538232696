// Package exitcode defines vmrun's documented process exit codes and an error
// type that carries one, so every layer can say how the process should end.
package exitcode

import (
	"errors"
	"fmt"
)

// The documented exit codes (see README.md and `vmrun --help`).
const (
	// OK: the guest shut down by itself or on request.
	OK = 0
	// Usage: the request is invalid as given (flag, config file, named file); nothing was created.
	Usage = 1
	// Setup: the host could not do what was asked (network set-up, permissions,
	// QEMU missing or unable to start), or could no longer do it: a service of
	// the network attachment died while the VM ran and the VM was stopped;
	// everything created was removed.
	Setup = 2
	// QEMUDied: QEMU ended abnormally (crash, killed by someone else, error exit).
	QEMUDied = 3
	// GuestPanic: the guest kernel panicked (reported by the pvpanic device).
	GuestPanic = 4
	// Timeout: --timeout expired; the VM was stopped and cleaned up.
	Timeout = 124
)

// Error is an error that decides the process exit code.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err carrying code; nil stays nil.
func Wrap(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Usagef returns a usage error (exit code 1).
func Usagef(format string, args ...any) error {
	return &Error{Code: Usage, Err: fmt.Errorf(format, args...)}
}

// Setupf returns a set-up error (exit code 2).
func Setupf(format string, args ...any) error {
	return &Error{Code: Setup, Err: fmt.Errorf(format, args...)}
}

// ErrSilent is the cause of an error whose message has already been given
// (a report on stdout, or the guest command's own output): vmrun exits
// with the error's code and prints nothing more.
var ErrSilent = errors.New("exit code only: the message was already given")

// Pass returns an error that makes vmrun exit with code and print nothing:
// the exit code of a command run in the guest, passed through (nil for 0).
func Pass(code int) error {
	if code == OK {
		return nil
	}
	return &Error{Code: code, Err: ErrSilent}
}

// Of maps an error to the exit code: nil is OK, an *Error anywhere in the
// chain gives its code, anything else is a set-up failure.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Setup
}

// Describe returns the one-line meaning of an exit code, for --help and the README.
func Describe(code int) string {
	switch code {
	case OK:
		return "the guest shut down by itself or on request"
	case Usage:
		return "usage or configuration error; nothing was created"
	case Setup:
		return "set-up failure (network, permissions, QEMU could not start), or the guest's network failed while it ran; everything created was removed"
	case QEMUDied:
		return "QEMU died abnormally"
	case GuestPanic:
		return "the guest kernel panicked"
	case Timeout:
		return "--timeout expired; the VM was stopped and cleaned up"
	}
	return "unknown"
}

// All lists the documented codes in order.
var All = []int{OK, Usage, Setup, QEMUDied, GuestPanic, Timeout}
