// Package service supervises the background services of a network
// attachment — DHCP responder, DNS forwarder, upstream lease keeper, router
// advertiser, address learners, passt — for as long as the attachment
// lives.
//
// A Group is made from the run's context. Each service runs in it under a
// Policy: restarted after a failure (with a backoff, at most a few times in
// a window), or ending the run at its first failure. When a service is
// gone for good the group's Done channel closes and Err says, in one
// sentence, which service died, what the guest lost and what to do. Stop
// cancels every service and waits for them; the attachment's undo calls it.
package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Default bounds of a restart policy (see Restart).
const (
	DefaultRestarts   = 5
	DefaultWindow     = time.Minute
	DefaultBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Policy says what happens when a service fails, and what the user is told
// when it is gone for good.
type Policy struct {
	// Restarts is how many failures within Window are restarted; one more
	// makes the service dead. 0: the first failure ends the run.
	Restarts int
	// Window is the span over which failures are counted.
	Window time.Duration
	// Backoff is the delay before the first restart; it doubles with each
	// failure still in the window, up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Lost completes "the guest ..." with what it lost when the service is
	// dead ("can no longer renew its address by DHCP").
	Lost string
	// Remedy says what the user can do ("restart the VM").
	Remedy string
}

// Restart returns the restart policy with the default bounds.
func Restart(lost, remedy string) Policy {
	return Policy{Restarts: DefaultRestarts, Window: DefaultWindow, Backoff: DefaultBackoff,
		MaxBackoff: DefaultMaxBackoff, Lost: lost, Remedy: remedy}
}

// EndRun returns the policy of a service whose first failure ends the run.
func EndRun(lost, remedy string) Policy {
	return Policy{Lost: lost, Remedy: remedy}
}

// DeadError is Err's error: the service that died and why. Its message is
// the one sentence the user reads.
type DeadError struct {
	Service string
	Policy  Policy
	// Failures is how many times it failed in the window (1 for EndRun).
	Failures int
	// Err is its last failure.
	Err error
}

func (e *DeadError) Error() string {
	how := "stopped"
	if e.Policy.Restarts > 0 {
		how = fmt.Sprintf("failed %d times within %s", e.Failures, e.Policy.Window)
	}
	return fmt.Sprintf("%s %s (%v): the guest %s; %s", e.Service, how, e.Err, e.Policy.Lost, e.Policy.Remedy)
}

func (e *DeadError) Unwrap() error { return e.Err }

// Group is the set of services of one attachment.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	notice func(string)
	wg     sync.WaitGroup

	once sync.Once
	done chan struct{}
	err  error

	mu     sync.Mutex
	byName map[string]*Handle // the latest service started under each name
}

// New returns a group whose services run until ctx ends or Stop is
// called. notice (may be nil) receives one line per restart.
func New(ctx context.Context, notice func(msg string)) *Group {
	if notice == nil {
		notice = func(string) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Group{ctx: ctx, cancel: cancel, notice: notice, done: make(chan struct{}), byName: map[string]*Handle{}}
}

// Handle is one running service.
type Handle struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	fail    context.CancelCauseFunc // ends the current run; nil between runs
	ran     bool                    // a run has started
	pending error                   // a Fail that came before the first run
}

// Go runs run in its own goroutine under policy p. run serves until its
// context ends, then returns nil; an error means it failed (p decides what
// follows). A nil return while the context is live means the service has
// finished on its own, which is no failure. A restart calls run again: it
// must open again what the previous run closed.
func (g *Group) Go(name string, p Policy, run func(ctx context.Context) error) *Handle {
	ctx, cancel := context.WithCancel(g.ctx)
	h := &Handle{name: name, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.byName[name] = h
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(h.done)
		defer cancel()
		g.supervise(ctx, h, p, run)
	}()
	return h
}

// supervise runs the service until it is cancelled, finishes or is dead.
func (g *Group) supervise(ctx context.Context, h *Handle, p Policy, run func(context.Context) error) {
	var failures []time.Time
	for {
		err := h.runOnce(ctx, run)
		if err == nil || ctx.Err() != nil {
			return
		}
		now := time.Now()
		failures = recent(append(failures, now), now, p.Window)
		if len(failures) > p.Restarts {
			g.die(&DeadError{Service: h.name, Policy: p, Failures: len(failures), Err: err})
			return
		}
		wait := backoff(p, len(failures))
		g.notice(fmt.Sprintf("%s failed (%v); restarting it in %s (restart %d of at most %d within %s)",
			h.name, err, wait, len(failures), p.Restarts, p.Window))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// runOnce runs the service once; a Fail during the run is its error.
func (h *Handle) runOnce(ctx context.Context, run func(context.Context) error) error {
	rctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	h.mu.Lock()
	h.fail = fail
	h.ran = true
	if h.pending != nil {
		fail(h.pending)
		h.pending = nil
	}
	h.mu.Unlock()
	err := run(rctx)
	h.mu.Lock()
	h.fail = nil
	h.mu.Unlock()
	if ctx.Err() == nil && rctx.Err() != nil {
		err = context.Cause(rctx) // ended by Fail
	}
	return err
}

// recent returns the times of ts within window before now.
func recent(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > window {
		i++
	}
	return ts[i:]
}

// backoff is the delay before the n-th restart within the window.
func backoff(p Policy, n int) time.Duration {
	d := p.Backoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, max(p.MaxBackoff, p.Backoff))
}

// die records the first dead service and closes Done.
func (g *Group) die(err error) {
	g.once.Do(func() {
		g.err = err
		close(g.done)
	})
}

// Done is closed when a service is dead: the attachment can no longer
// serve the guest. Stopping the group does not close it.
func (g *Group) Done() <-chan struct{} { return g.done }

// Err returns the *DeadError of the first dead service once Done is
// closed, nil before.
func (g *Group) Err() error {
	select {
	case <-g.done:
		return g.err
	default:
		return nil
	}
}

// Stop cancels every service and waits for them to return. It may be
// called more than once.
func (g *Group) Stop() {
	g.cancel()
	g.wg.Wait()
}

// Fail is Handle.Fail for the service last started as name; it reports
// whether there is one.
func (g *Group) Fail(name string, err error) bool {
	g.mu.Lock()
	h := g.byName[name]
	g.mu.Unlock()
	if h == nil {
		return false
	}
	h.Fail(err)
	return true
}

// Cancel asks the service to stop, without waiting (see Wait).
func (h *Handle) Cancel() { h.cancel() }

// Wait waits until the service has returned for good.
func (h *Handle) Wait() { <-h.done }

// Stop cancels the service and waits for it.
func (h *Handle) Stop() {
	h.Cancel()
	h.Wait()
}

// Fail ends the service's current run as a failure with err, as if run
// had returned it; the policy decides what follows. It is for a watcher
// that sees the service's resource go from outside, and for tests that
// have no other way to end a service. A Fail before the first run has
// started (Go returns before its goroutine runs) ends that run as soon as
// it starts; a service between two runs is left alone (the next run opens
// its resources again).
func (h *Handle) Fail(err error) {
	if err == nil {
		err = errors.New("failed")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.fail != nil:
		h.fail(err)
	case !h.ran:
		h.pending = err
	}
}
