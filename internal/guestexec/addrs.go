package guestexec

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/vmrun/vmrun/qga"
)

// Channel is a running VM's agent channel as the supervisor holds it:
// the proxy serving qga.sock, and the supervisor's own questions to the
// agent on the same connection (never a second client of QEMU's).
type Channel struct {
	proxy    *agentProxy
	closeAll func() error
	kick     chan struct{}
}

// Close stops serving and closes the listeners.
func (ch *Channel) Close() error { return ch.closeAll() }

// Kick asks WatchAddresses to ask the agent again soon: something the
// supervisor saw (an address learnt from the guest's traffic) may have
// changed the guest's addresses. It never blocks.
func (ch *Channel) Kick() {
	select {
	case ch.kick <- struct{}{}:
	default: // one is pending already
	}
}

// How WatchAddresses paces its questions. Before the agent first answers,
// each try waits agentTry for it, then leaves the channel to `vmrun exec`
// for a pause that grows from retryMin to retryMax. Once it answers, the
// agent is asked again on a Kick, after each `vmrun exec` session (the
// command may have changed the addresses), and every refresh otherwise.
const (
	agentTry = 3 * time.Second
	retryMin = 2 * time.Second
	retryMax = 30 * time.Second
	refresh  = time.Minute
	askWait  = 10 * time.Second // a question, once the agent answered before
	// settleTime is how long the channel must stay without a kick before
	// a kicked question is asked.
	settleTime = 200 * time.Millisecond
)

// errBusy: a qga.sock client holds the channel.
var errBusy = errors.New("the guest agent channel is busy")

// WatchAddresses asks the guest agent for the guest's addresses until ctx
// ends, and calls report with the usable ones (qga.Usable) each time the
// answer differs from the previous one. A failed question leaves the last
// answer standing.
func (ch *Channel) WatchAddresses(ctx context.Context, report func([]netip.Addr)) {
	var last []netip.Addr
	up := false
	pause := retryMin / 2 // doubled before each wait
	for {
		wait := agentTry
		if up {
			wait = askWait
		}
		addrs, err := ch.ask(ctx, wait)
		switch {
		case err == nil:
			up, pause = true, refresh
			if !slices.Equal(addrs, last) {
				last = addrs
				report(slices.Clone(addrs))
			}
		case !up:
			pause = min(pause*2, retryMax)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-ch.kick:
			t.Stop()
			if !ch.settle(ctx) {
				return
			}
		case <-t.C:
		}
	}
}

// settle waits out a burst of kicks (`vmrun exec` run back to back, where
// a question between two of them would delay the next). It returns false
// when ctx ended.
func (ch *Channel) settle(ctx context.Context) bool {
	t := time.NewTimer(settleTime)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-ch.kick:
			t.Reset(settleTime)
		case <-t.C:
			return true
		}
	}
}

// ask is one session: sync with the agent (waiting at most wait), then
// guest-network-get-interfaces.
func (ch *Channel) ask(ctx context.Context, wait time.Duration) ([]netip.Addr, error) {
	if ch.proxy.current() != nil {
		// A `vmrun exec` holds the channel: its end kicks the question.
		return nil, errBusy
	}
	conn, err := ch.proxy.Session()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c := qga.NewClient(conn, agentSock)
	// The wait for a turn on the channel counts too: a long `vmrun exec`
	// holds it, and its end kicks the next question anyway.
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := c.Sync(ctx); err != nil {
		return nil, err
	}
	ifs, err := c.Interfaces(ctx)
	if err != nil {
		return nil, err
	}
	return qga.Usable(ifs), nil
}
