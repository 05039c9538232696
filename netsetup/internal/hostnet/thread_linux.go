package hostnet

import (
	"runtime"
	"sync"

	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/caps"
	"golang.org/x/sys/unix"
)

// A Thread is a goroutine on a thread of its own that enter moves into
// another network namespace (unshare for a new one) with CAP_SYS_ADMIN
// raised, and that stays there running the functions given to Go, in
// order, beside the caller's own work — the set-up's netlink requests
// need no thread in the namespace, its sockets do. Unlike Away, which
// visits the namespace on the caller's thread, the work goes on while the
// caller's goes on: under TCG each visit's two setns calls and the
// caller's idle second CPU cost more than the handovers. Stop returns the
// thread to home with its capabilities lowered and gives it back to the
// runtime; should that return fail, the goroutine ends locked and the
// runtime drops the thread, so that no other goroutine ever runs in the
// other namespace.
type Thread struct {
	jobs chan func(entered error)
	done chan struct{}
	stop sync.Once
}

// NewThread starts a Thread. Should enter fail, the thread has not moved
// and runs nothing: every function given to Go gets enter's error instead.
func NewThread(home netns.NsHandle, enter func() error) *Thread {
	t := &Thread{jobs: make(chan func(error), 8), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		runtime.LockOSThread()
		lower := caps.Raise(unix.CAP_SYS_ADMIN)
		entered := enter()
		for job := range t.jobs {
			job(entered)
		}
		if entered == nil && netns.Set(home) != nil {
			return // locked: the runtime drops the thread
		}
		lower()
		runtime.UnlockOSThread()
	}()
	return t
}

// Go queues fn to run on the thread, after what was queued before; the
// returned channel gets its error (enter's, when that failed).
func (t *Thread) Go(fn func() error) <-chan error {
	errc := make(chan error, 1)
	t.jobs <- func(entered error) {
		if entered != nil {
			errc <- entered
			return
		}
		errc <- fn()
	}
	return errc
}

// Stop lets the thread finish what was queued and leave; Wait waits for
// that. Go must not be called after Stop.
func (t *Thread) Stop() { t.stop.Do(func() { close(t.jobs) }) }

// Wait waits for the stopped thread to finish.
func (t *Thread) Wait() { <-t.done }
