// Package caps raises and lowers Linux capabilities of the calling thread.
//
// An unprivileged vmrun installed by `vmrun setup` carries the file
// capabilities CAP_NET_ADMIN, CAP_NET_RAW and CAP_MKNOD in its permitted set only: they
// are effective nowhere until Raise makes them so, on one OS thread (the
// caller must hold runtime.LockOSThread), for one piece of link set-up or
// clean-up, and Lower ends that. Capabilities are per thread in Linux, and
// Go starts new threads from a clean template thread while one is locked,
// so no other thread ever runs with them. QEMU gets none: it is exec'd
// without file capabilities and vmrun never sets ambient ones, so the
// kernel computes empty permitted and effective sets for it.
package caps

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The capabilities vmrun's link set-up uses.
const (
	NetAdmin = unix.CAP_NET_ADMIN // links, addresses, routes, nftables
	Mknod    = unix.CAP_MKNOD     // the private node of a macvtap's character device
	NetRaw   = unix.CAP_NET_RAW   // the DHCP responder's packet socket
)

// Sets are the capability sets of the calling thread.
type Sets struct {
	Effective, Permitted, Inheritable uint64
}

// Has reports whether c is in the set s.
func Has(s uint64, c int) bool { return s&(1<<uint(c)) != 0 }

// Get returns the calling thread's capability sets.
func Get() (Sets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if err := unix.Capget(&hdr, &d[0]); err != nil {
		return Sets{}, fmt.Errorf("capget: %w", err)
	}
	join := func(lo, hi uint32) uint64 { return uint64(lo) | uint64(hi)<<32 }
	return Sets{
		Effective:   join(d[0].Effective, d[1].Effective),
		Permitted:   join(d[0].Permitted, d[1].Permitted),
		Inheritable: join(d[0].Inheritable, d[1].Inheritable),
	}, nil
}

func set(s Sets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	d := [2]unix.CapUserData{
		{Effective: uint32(s.Effective), Permitted: uint32(s.Permitted), Inheritable: uint32(s.Inheritable)},
		{Effective: uint32(s.Effective >> 32), Permitted: uint32(s.Permitted >> 32), Inheritable: uint32(s.Inheritable >> 32)},
	}
	if err := unix.Capset(&hdr, &d[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// Usable reports whether the process can use capability c: it is
// effective, or permitted and so can be raised.
func Usable(c int) bool {
	s, err := Get()
	return err == nil && (Has(s.Effective, c) || Has(s.Permitted, c))
}

// Raise makes those of cs that are permitted effective on the calling
// thread (which must be locked to its goroutine) and returns the function
// that restores the thread's effective set. Capabilities that are not
// permitted are left out: the operation needing them fails with EPERM, as
// it would have.
func Raise(cs ...int) (lower func()) {
	s, err := Get()
	if err != nil {
		return func() {}
	}
	want := s
	for _, c := range cs {
		if Has(s.Permitted, c) {
			want.Effective |= 1 << uint(c)
		}
	}
	if want.Effective == s.Effective || set(want) != nil {
		return func() {}
	}
	return func() { _ = set(s) }
}

// RaiseAll raises every capability vmrun's network set-up may use.
func RaiseAll() (lower func()) { return Raise(NetAdmin, Mknod, NetRaw) }
