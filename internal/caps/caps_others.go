//go:build !linux

package caps

// The capabilities vmrun's link set-up uses (Linux numbers).
const (
	NetAdmin = 12
	Mknod    = 27
	NetRaw   = 13
)

// Usable is false outside Linux.
func Usable(c int) bool { return false }

// Raise does nothing outside Linux.
func Raise(cs ...int) (lower func()) { return func() {} }

// RaiseAll does nothing outside Linux.
func RaiseAll() (lower func()) { return func() {} }
