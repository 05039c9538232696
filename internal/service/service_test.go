package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// notes collects the group's notices.
type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) add(msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, msg)
}

func (n *notes) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.lines...)
}

// quick is a restart policy with short delays.
func quick(restarts int) Policy {
	p := Restart("can no longer renew its address", "restart the VM")
	p.Restarts, p.Backoff, p.MaxBackoff = restarts, time.Millisecond, 4*time.Millisecond
	return p
}

var errBroken = errors.New("socket closed")

func waitDone(t *testing.T, g *Group) {
	t.Helper()
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done was not closed")
	}
}

func notDone(t *testing.T, g *Group) {
	t.Helper()
	select {
	case <-g.Done():
		t.Fatalf("Done closed: %v", g.Err())
	default:
	}
	if err := g.Err(); err != nil {
		t.Fatalf("Err = %v, want nil", err)
	}
}

// TestRestartThenServe: a service that fails twice is run again each time,
// with one notice per restart, and the group stays alive.
func TestRestartThenServe(t *testing.T) {
	var n notes
	g := New(t.Context(), n.add)
	serving := make(chan struct{})
	runs := 0
	g.Go("the DHCP responder", quick(3), func(ctx context.Context) error {
		runs++
		if runs <= 2 {
			return errBroken
		}
		close(serving)
		<-ctx.Done()
		return nil
	})
	<-serving
	notDone(t, g)
	g.Stop()
	notDone(t, g)
	if runs != 3 {
		t.Errorf("runs = %d, want 3", runs)
	}
	got := n.all()
	if len(got) != 2 {
		t.Fatalf("notices = %q, want 2", got)
	}
	for i, l := range got {
		for _, want := range []string{"the DHCP responder failed", "socket closed", "restart "} {
			if !strings.Contains(l, want) {
				t.Errorf("notice %d %q lacks %q", i, l, want)
			}
		}
	}
}

// TestRestartsExhausted: one failure more than the policy restarts within
// its window makes the service dead, with the sentence.
func TestRestartsExhausted(t *testing.T) {
	var n notes
	g := New(t.Context(), n.add)
	runs := 0
	g.Go("the DHCP responder on vmr1", quick(2), func(ctx context.Context) error {
		runs++
		return errBroken
	})
	waitDone(t, g)
	g.Stop()
	if runs != 3 {
		t.Errorf("runs = %d, want 3", runs)
	}
	if len(n.all()) != 2 {
		t.Errorf("notices = %q, want 2", n.all())
	}
	err := g.Err()
	var dead *DeadError
	if !errors.As(err, &dead) || dead.Service != "the DHCP responder on vmr1" || dead.Failures != 3 {
		t.Fatalf("Err = %#v", err)
	}
	if !errors.Is(err, errBroken) {
		t.Errorf("Err %v does not wrap the last failure", err)
	}
	want := "the DHCP responder on vmr1 failed 3 times within 1m0s (socket closed): the guest can no longer renew its address; restart the VM"
	if err.Error() != want {
		t.Errorf("Err =\n %q\nwant\n %q", err, want)
	}
}

// TestEndRun: the first failure of an end-the-run service closes Done,
// without a restart or a notice; the other services keep running.
func TestEndRun(t *testing.T) {
	var n notes
	g := New(t.Context(), n.add)
	other := g.Go("the DNS forwarder", quick(3), func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	})
	runs := 0
	g.Go("passt", EndRun("has lost its network", "restart the VM"), func(ctx context.Context) error {
		runs++
		return errors.New("exit status 1")
	})
	waitDone(t, g)
	select {
	case <-other.done:
		t.Error("the other service was stopped by the dead one")
	default:
	}
	g.Stop()
	if runs != 1 || len(n.all()) != 0 {
		t.Errorf("runs = %d, notices %q; want 1 and none", runs, n.all())
	}
	want := "passt stopped (exit status 1): the guest has lost its network; restart the VM"
	if got := g.Err().Error(); got != want {
		t.Errorf("Err = %q, want %q", got, want)
	}
}

// TestFinishedIsNoFailure: a service that returns nil on its own has
// finished; nothing is restarted and Done stays open.
func TestFinishedIsNoFailure(t *testing.T) {
	var n notes
	g := New(t.Context(), n.add)
	h := g.Go("passt", EndRun("has lost its network", "restart the VM"), func(ctx context.Context) error { return nil })
	h.Wait()
	notDone(t, g)
	g.Stop()
	if len(n.all()) != 0 {
		t.Errorf("notices %q", n.all())
	}
}

// TestFailRestarts: Fail ends a blocked run with its error, the policy
// restarts it, and the second run sees a live context.
func TestFailRestarts(t *testing.T) {
	var n notes
	g := New(t.Context(), n.add)
	started := make(chan context.Context)
	h := g.Go("the router advertiser", quick(1), func(ctx context.Context) error {
		started <- ctx
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	if g.Fail("no such service", errBroken) {
		t.Error("Fail found a service that was never started")
	}
	if !g.Fail("the router advertiser", errBroken) {
		t.Fatal("Fail did not find the service by its name")
	}
	ctx := <-started
	if ctx.Err() != nil {
		t.Fatal("the restarted run's context is already done")
	}
	notDone(t, g)
	if got := n.all(); len(got) != 1 || !strings.Contains(got[0], "socket closed") {
		t.Errorf("notices = %q, want one naming the cause", got)
	}
	h.Fail(errBroken)
	waitDone(t, g)
	if !errors.Is(g.Err(), errBroken) {
		t.Errorf("Err = %v", g.Err())
	}
	g.Stop()
}

// TestStopWaits: Stop cancels every service and returns after all have
// returned; Done stays open and a second Stop is harmless.
func TestStopWaits(t *testing.T) {
	g := New(t.Context(), nil)
	var returned atomic.Int32
	for _, name := range []string{"a", "b", "c"} {
		g.Go(name, quick(1), func(ctx context.Context) error {
			defer returned.Add(1)
			<-ctx.Done()
			return errors.New("cancelled: not a failure")
		})
	}
	g.Stop()
	if n := returned.Load(); n != 3 {
		t.Fatalf("Stop returned when %d of 3 services had", n)
	}
	notDone(t, g)
	g.Stop()
}

// TestParentContext: the group ends with the context it was made from.
func TestParentContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g := New(ctx, nil)
	h := g.Go("a", quick(1), func(ctx context.Context) error { <-ctx.Done(); return nil })
	cancel()
	h.Wait()
	notDone(t, g)
	g.Stop()
}

// TestHandleStop: one service stops alone; the group goes on.
func TestHandleStop(t *testing.T) {
	g := New(t.Context(), nil)
	a := g.Go("a", quick(1), func(ctx context.Context) error { <-ctx.Done(); return nil })
	b := g.Go("b", quick(1), func(ctx context.Context) error { <-ctx.Done(); return nil })
	a.Stop()
	select {
	case <-b.done:
		t.Fatal("stopping a stopped b")
	default:
	}
	g.Stop()
	b.Wait()
}

func TestBackoff(t *testing.T) {
	p := Policy{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for _, c := range []struct {
		n    int
		want time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{50, time.Second},
	} {
		if got := backoff(p, c.n); got != c.want {
			t.Errorf("backoff(%d) = %s, want %s", c.n, got, c.want)
		}
	}
}

func TestRecent(t *testing.T) {
	now := time.Now()
	ts := []time.Time{now.Add(-3 * time.Minute), now.Add(-2 * time.Minute), now.Add(-time.Second), now}
	if got := recent(ts, now, time.Minute); len(got) != 2 {
		t.Errorf("recent = %v, want the last 2", got)
	}
}

// TestFailBeforeFirstRun: a Fail that comes before the service's first run
// has started (its goroutine not scheduled yet) is not lost: that run ends
// with it as soon as it starts. A Fail between two runs is left alone.
func TestFailBeforeFirstRun(t *testing.T) {
	h := &Handle{name: "early", done: make(chan struct{})}
	killed := errors.New("killed early")
	h.Fail(killed)
	served := false
	bound, stop := context.WithTimeout(context.Background(), time.Minute) // fails, not hangs, if the Fail is lost
	defer stop()
	err := h.runOnce(bound, func(ctx context.Context) error {
		served = true
		<-ctx.Done()
		return nil
	})
	if !errors.Is(err, killed) || !served {
		t.Fatalf("first run after an early Fail: err %v, served %v; want %v", err, served, killed)
	}
	// Between runs now: a Fail is dropped, the next run serves until its
	// context ends.
	h.Fail(errors.New("between runs"))
	ctx, cancel := context.WithCancel(context.Background())
	err = h.runOnce(ctx, func(rctx context.Context) error {
		if rctx.Err() != nil {
			return errors.New("the run started cancelled")
		}
		cancel()
		<-rctx.Done()
		return nil
	})
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
}
