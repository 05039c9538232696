package hostnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/caps"
	"golang.org/x/sys/unix"
)

// dumpRetries bounds the retries of a netlink dump the kernel interrupted
// (the table changed while it was being read).
const dumpRetries = 5

// RetryDump runs a netlink dump until it completes without
// netlink.ErrDumpInterrupted (whose results may be inconsistent).
func RetryDump[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpRetries {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("netlink dump interrupted %d times: %w", dumpRetries, err)
}

// NewHandle opens a route netlink socket in the calling thread's network
// namespace; every request made through it stays in that namespace.
func NewHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	return h, nil
}

// IsNotFound reports whether a netlink error means "no such link".
func IsNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// InNetns runs fn on a throwaway OS thread switched into the network
// namespace at path; the thread exits afterwards, so nothing else ever
// runs in that namespace by accident. A missing path is os.ErrNotExist.
func InNetns(path string, fn func() error) error {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer h.Close()
	return OnThrowawayThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter network namespace %s: %w", path, err)
		}
		return fn()
	})
}

// OnThrowawayThread runs fn on a new goroutine locked to its OS thread and
// never unlocked: the thread dies with the goroutine, taking any namespace
// it entered with it.
func OnThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		caps.RaiseAll() // the thread dies with its capabilities
		errc <- fn()
	}()
	return <-errc
}

// OnThrowawayThreadBack is OnThrowawayThread that also returns the thread
// to its network namespace before it is dropped: when the runtime ran the
// goroutine on the main thread, which it never lets exit, that thread
// would otherwise stay in the private namespace — keeping it alive, and
// making /proc/PID/ns/net of vmrun name it.
func OnThrowawayThreadBack(fn func() error) error {
	return OnThrowawayThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return errors.Join(ferr, fmt.Errorf("return to vmrun's network namespace: %w", err))
		}
		return ferr
	})
}

// Away runs fn on the calling goroutine's own thread, locked, after enter
// moved that thread into another network namespace (netns.Set, or
// unshare for a new one), and then returns the thread to home, the
// namespace it is in: an occasional visit (a sysfs mount, a service's
// socket reopened) goes this way, with no thread to start and no
// goroutine to hand over to and wait for (each costs more than the two
// setns calls, many times over under TCG); work that can go on beside the
// caller's goes on a Thread. CAP_SYS_ADMIN is raised
// for the visit. Should the return fail, the thread stays locked to the
// goroutine for good, so that no other goroutine ever runs in the other
// namespace (the runtime ends the thread with the goroutine), and the
// error says so.
func Away(home netns.NsHandle, enter func() error, fn func() error) error {
	runtime.LockOSThread()
	defer caps.Raise(unix.CAP_SYS_ADMIN)()
	if err := enter(); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(home); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to vmrun's network namespace (this thread stays where it is, locked): %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// InThrowawayNetns runs fn in a new, empty network namespace, with a
// netlink handle for it, on a throwaway thread that returns to vmrun's
// namespace before it is dropped (see OnThrowawayThreadBack): whatever fn
// creates there vanishes with the namespace. Probes use it.
func InThrowawayNetns(fn func(h *netlink.Handle) error) error {
	return OnThrowawayThreadBack(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		h, err := NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	})
}

// Privileged runs fn on the calling goroutine's thread, locked, with
// vmrun's capabilities raised (see internal/caps) and lowered again.
func Privileged(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer caps.RaiseAll()()
	return fn()
}

// CloseFiles closes fs, ignoring files already closed.
func CloseFiles(fs []*os.File) error {
	var errs []error
	for _, f := range fs {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// InNS runs fn in network namespace ns (the one a set-up ran in): sysctl files and new
// sockets belong to the namespace of the thread that opens them, and Undo
// or a lease change may run on any thread. A thread already there (the
// usual case) runs fn itself, locked; another one hands fn to a throwaway
// thread (creating it costs more than the sysctl write). Either way fn
// runs with vmrun's capabilities raised.
func InNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	if cur, err := netns.Get(); err == nil {
		same := cur.Equal(ns)
		cur.Close()
		if same {
			defer runtime.UnlockOSThread()
			// An unprivileged vmrun's capabilities are effective only
			// while raised (the keeper's thread has none).
			defer caps.RaiseAll()()
			return fn()
		}
	}
	runtime.UnlockOSThread()
	return OnThrowawayThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter the network namespace of the VM's links: %w", err)
		}
		return fn()
	})
}

// HostIPv4 is the host's first global IPv4 address on link ix (the source
// of its packets to a guest through a host link or shim), or nil.
func HostIPv4(h *netlink.Handle, ix int) net.IP {
	addrs, err := RetryDump(func() ([]netlink.Addr, error) {
		return h.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: ix}}, netlink.FAMILY_V4)
	})
	if err != nil {
		return nil
	}
	for _, ad := range addrs {
		if ad.Scope == int(netlink.SCOPE_UNIVERSE) {
			return ad.IP
		}
	}
	return nil
}
