package watch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/detect"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// The debounce of a burst of kernel events: detection runs once the
// events have been quiet for Quiet, or MaxDelay after the burst's first
// event if they never are. One kernel operation's messages come within
// 0.2 ms (measured in a netns: a link down, 5-6 messages, 0.06-0.21 ms;
// a tun's deletion with its route 0.15-0.21 ms); a change made in steps
// (a link up, then its route; a tun made, set up, routed) has gaps of
// 1-6 ms between them, which Quiet may split: each step's detection
// decides from the kernel's state at that moment, which is Nothing, the
// same switch, or a park held for ParkGrace. Every ms of Quiet is on
// the way from the event to the guest's new attachment.
const (
	DefaultQuiet    = 3 * time.Millisecond
	DefaultMaxDelay = 50 * time.Millisecond
	// DefaultParkGrace is how long a move to park (no usable uplink) waits
	// for an uplink to appear: undocking, or a bridge giving its address
	// back to its port, goes through a moment without a default route,
	// and moving the guest to NAT and back for it costs two switches.
	DefaultParkGrace = time.Second
)

// Config is what a Watcher follows.
type Config struct {
	// Request is what the user asked for (its mode decides whether the
	// guest may move at all; see Replan).
	Request netsetup.Request
	// Facts are the facts the current plan was decided on: their
	// capabilities are reused (Caps are probed once per run).
	Facts netsetup.Facts
	// Plan is the guest's current attachment; a zero Plan means "decide it
	// now" (`vmrun net plan --watch`).
	Plan netsetup.Plan
	// Netns is the network namespace to watch; nil means the process's own.
	Netns *netns.NsHandle
	// Quiet and MaxDelay override the debounce (zero: the defaults).
	Quiet, MaxDelay time.Duration
	// ParkGrace overrides DefaultParkGrace (zero: the default; negative:
	// park at once).
	ParkGrace time.Duration
	// OnDetect, when set, is called after each detection with its
	// decision, Nothing included (tests; a trace for bug reports).
	OnDetect func(Decision)
	// Apply, when set, carries out each decision that is not Nothing
	// before the watcher looks again, and returns the plan the guest is on
	// afterwards: the decision's target when it worked, the one before
	// when not (the next change then decides again from there). It runs
	// on a goroutine of its own, not on the watcher's thread. Without it,
	// every decision is taken as carried out.
	Apply func(Decision) netsetup.Plan
	// Current, when set, is the plan the guest is on, asked before each
	// decision: the run may move the guest without the watcher (--net
	// auto's DHCP verdict moves it to routed), and the next decision must
	// start from there.
	Current func() netsetup.Plan
	// Remembered, when set, turns a switch's plan into what --net auto
	// remembered for the network it detected (internal/netplan's
	// Remembered: routed where bridge or macvtap got no DHCP answer
	// before), so that a guest following the uplink onto such a network
	// goes there at once. It runs on the watcher's thread, in the watched
	// namespace.
	Remembered func(netsetup.Facts, netsetup.Plan) netsetup.Plan
}

// Watcher follows the uplink and sends a Decision for each change that
// matters (Replan's action is not Nothing).
type Watcher struct {
	ev        atomic.Pointer[events] // the current subscriptions
	decisions chan Decision
	done      chan struct{}
	err       error
	// First is the plan and uplink the watch started from.
	First Decision
}

// Decisions delivers the decisions; it is closed when the watch ends.
func (w *Watcher) Decisions() <-chan Decision { return w.decisions }

// Err is why the watch ended (nil when its context was cancelled); valid
// once Decisions is closed.
func (w *Watcher) Err() error {
	<-w.done
	return w.err
}

// Start subscribes to the kernel's notifications in cfg.Netns, describes
// the uplink once, and returns once the subscriptions are live: a change
// made after Start returns is seen. The watch runs until ctx ends. It
// assumes each decision is carried out (the next one starts from its
// target).
func Start(ctx context.Context, cfg Config) (*Watcher, error) {
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultQuiet
	}
	if cfg.MaxDelay < cfg.Quiet {
		cfg.MaxDelay = max(DefaultMaxDelay, cfg.Quiet)
	}
	if cfg.ParkGrace == 0 {
		cfg.ParkGrace = DefaultParkGrace
	}
	w := &Watcher{decisions: make(chan Decision, 16), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(w.done)
		defer close(w.decisions)
		if cfg.Netns == nil {
			// vmrun's own namespace: any thread will do, and none keeps
			// capabilities raised while it waits (detection raises what it
			// needs, for as long as it needs it).
			w.err = w.run(ctx, cfg, ready)
			return
		}
		w.err = hostnet.OnThrowawayThreadBack(func() error {
			if err := netns.Set(*cfg.Netns); err != nil {
				ready <- fmt.Errorf("enter the network namespace to watch: %w", err)
				return nil
			}
			return w.run(ctx, cfg, ready)
		})
	}()
	if err := <-ready; err != nil {
		<-w.done
		return nil, err
	}
	return w, nil
}

// run is the watch, on a thread in the watched namespace: subscribe,
// describe the start, then detect and decide after each burst.
func (w *Watcher) run(ctx context.Context, cfg Config, ready chan<- error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ev, err := subscribe(ctx)
	if err != nil {
		ready <- err
		return nil
	}
	w.ev.Store(ev)
	defer func() { w.ev.Load().drain() }()
	d := newDecider(cfg)
	if w.First, err = d.start(); err != nil {
		ready <- err
		return nil
	}
	ready <- nil
	return w.loop(ctx, cfg, d)
}

// loop debounces the events and decides after each burst.
func (w *Watcher) loop(ctx context.Context, cfg Config, d *decider) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var first time.Time // the burst's first event; zero between bursts
	var held time.Time  // when a move to park was first decided and held back
	misses := 0         // detections in a row that met a vanished link
	for {
		ev := w.ev.Load()
		select {
		case <-ctx.Done():
			return nil
		case err := <-ev.failed:
			// An overflowed socket (ENOBUFS) lost events: subscribe again
			// and look, as after an event.
			if ctx.Err() != nil {
				return nil
			}
			if err := w.resubscribe(ctx, ev, err); err != nil {
				return err
			}
			first = time.Now()
			timer.Reset(cfg.Quiet)
		case <-ev.kick:
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			timer.Reset(min(cfg.Quiet, first.Add(cfg.MaxDelay).Sub(now)))
		case <-timer.C:
			dec, err := d.decide()
			if err != nil && vanished(err) && misses < maxMisses {
				misses++ // a link went during the detection (a change in steps): look again
				if first.IsZero() {
					first = time.Now()
				}
				timer.Reset(cfg.Quiet)
				continue
			}
			if err != nil {
				return err
			}
			misses = 0
			now := time.Now()
			if dec.Action == Park && dec.Plan != nil && cfg.ParkGrace > 0 {
				// Give an uplink ParkGrace to appear; an event before
				// then has the watcher look again.
				if held.IsZero() {
					held = first
				}
				if wait := held.Add(cfg.ParkGrace).Sub(now); wait > 0 {
					first = time.Time{}
					timer.Reset(wait)
					continue
				}
			}
			since := first
			if !held.IsZero() {
				since = held
			}
			first, held = time.Time{}, time.Time{}
			d.commit(dec)
			dec.Latency = now.Sub(since)
			if cfg.OnDetect != nil {
				cfg.OnDetect(dec)
			}
			if dec.Action == Nothing {
				continue
			}
			if cfg.Apply != nil {
				d.applied(cfg.Apply, dec)
			}
			select {
			case w.decisions <- dec:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// resubscribe replaces the failed subscriptions ev (failed with err).
func (w *Watcher) resubscribe(ctx context.Context, ev *events, err error) error {
	ev.drain()
	again, serr := subscribe(ctx)
	if serr != nil {
		w.ev.Store(&events{stop: func() {}, wifi: func() {}})
		return fmt.Errorf("%w; subscribing again: %w", err, serr)
	}
	w.ev.Store(again)
	return nil
}

// maxMisses bounds the detections in a row that may fail on a link that
// vanished during them (vanished), Quiet apart, before the watch ends.
const maxMisses = 20

// vanished says whether a detection failed because a link it had just
// found was gone at its next lookup.
func vanished(err error) bool {
	return errors.Is(err, hostnet.ErrNoInterface) || hostnet.IsNotFound(err)
}

// decider keeps the state between detections.
type decider struct {
	cfg  Config
	name string // the interface detection looks at ("": the default route's)
	cur  netsetup.Plan
	last State
}

func newDecider(cfg Config) *decider {
	d := &decider{cfg: cfg, cur: cfg.Plan, name: cfg.Request.Interface()}
	if m := cfg.Request.Mode; m != "" && m != netsetup.Auto && d.name == "" && cfg.Plan.Parent != "" {
		d.name = cfg.Plan.Parent // an explicit mode stays on the parent it started on
	}
	return d
}

// start describes the uplink the watch starts from (and decides the
// current plan when the caller had none).
func (d *decider) start() (Decision, error) {
	s, err := d.detect()
	if err != nil {
		return Decision{}, err
	}
	d.last = s
	if d.cur.Mode == "" {
		if d.cur, err = netsetup.Decide(s.Facts, d.cfg.Request); err != nil {
			return Decision{}, err
		}
		if d.name == "" && d.cfg.Request.Mode != "" && d.cfg.Request.Mode != netsetup.Auto {
			d.name = d.cur.Parent
		}
	}
	p := d.cur
	return Decision{At: time.Now(), Action: Begin, To: whereOf(p), Why: p.Reason, Plan: &p, Uplink: s}, nil
}

// decide detects again and decides from the current state, changing nothing
// (commit does).
func (d *decider) decide() (Decision, error) {
	s, err := d.detect()
	if err != nil {
		return Decision{}, err
	}
	if d.cfg.Current != nil {
		if p := d.cfg.Current(); p.Mode != "" {
			d.cur = p
		}
	}
	dec := Replan(d.cur, d.last, s, d.cfg.Request)
	dec.At = time.Now()
	return remembered(dec, d.cur, d.cfg.Remembered), nil
}

// commit makes dec's detection the last one and its target current.
func (d *decider) commit(dec Decision) {
	d.last = dec.Uplink
	if dec.Plan != nil {
		d.cur = *dec.Plan
	}
}

// applied has apply carry out dec, on a goroutine of its own (the
// watcher's may sit on a thread in another namespace, with its
// capabilities raised), and makes the plan it returns current.
func (d *decider) applied(apply func(Decision) netsetup.Plan, dec Decision) {
	res := make(chan netsetup.Plan, 1)
	go func() { res <- apply(dec) }()
	d.cur = <-res
}

// detect describes the uplink on this thread's namespace, with the run's
// capabilities, without the guest's own links among its uppers, and with
// its Wi-Fi association.
func (d *decider) detect() (State, error) {
	// The capabilities are the run's; without them (net plan --watch),
	// the first detection probes them, as Detect does.
	probe := d.cfg.Facts.Caps == (netsetup.Caps{})
	f, err := detect.Host(d.name, probe, d.cfg.Request.ProbeCache)
	if err != nil {
		return State{}, fmt.Errorf("describe the uplink: %w", err)
	}
	if probe {
		d.cfg.Facts.Caps = f.Caps
	}
	f.Caps = d.cfg.Facts.Caps
	f.Uppers = notOwn(f.Uppers, d.cfg.Request.Name)
	s := State{Facts: f}
	if f.Kind == netsetup.UplinkWireless {
		s.SSID, s.BSSID = detect.Association(f.Index)
	}
	return s, nil
}

// notOwn drops the VM's own links (their names start with the VM's
// prefix) from the uplink's uppers: they are the guest's attachment, not
// something that blocks it.
func notOwn(ups []netsetup.UpperLink, vm string) []netsetup.UpperLink {
	if vm == "" {
		return ups
	}
	prefix := strings.TrimSuffix(netsetup.LinkName(vm, netsetup.RoleTap), string(rune(netsetup.RoleTap)))
	var out []netsetup.UpperLink
	for _, u := range ups {
		if !strings.HasPrefix(u.Name, prefix) {
			out = append(out, u)
		}
	}
	return out
}

// events are the kernel's notifications, each one a kick.
type events struct {
	kick   chan struct{}
	failed chan error
	stop   context.CancelFunc // closes the subscriptions' sockets
	drains []func()           // empty each subscription's channel until closed
	wifi   func()
}

// subscribe joins the route, link and address groups of this thread's
// namespace, and nl80211's association events when the kernel has
// nl80211; each message kicks the debounce. The subscriptions end with
// ctx, or with drain. The sockets are made on the calling thread, in its
// namespace (a thread locked in the watched one, or any thread of
// vmrun's own), without naming the namespace: vishvananda/netlink would
// then enter it (setns), which needs CAP_SYS_ADMIN even for the one the
// thread is in, and a member of vmrun's group has none — it could not
// follow the uplink at all.
func subscribe(parent context.Context) (*events, error) {
	ctx, stop := context.WithCancel(parent)
	ev := &events{kick: make(chan struct{}, 1), failed: make(chan error, 1), stop: stop, wifi: func() {}}
	const buf = 1 << 20 // a flap of many routes must not overflow the socket
	errCB := func(err error) {
		if ctx.Err() == nil { // closing the sockets at the end fails their reads
			ev.fail(fmt.Errorf("netlink notifications: %w", err))
		}
	}
	routes, links, addrs := make(chan netlink.RouteUpdate, 64), make(chan netlink.LinkUpdate, 64), make(chan netlink.AddrUpdate, 64)
	subs := []struct {
		sub   func() error
		start func()
	}{
		{func() error {
			return netlink.RouteSubscribeWithOptions(routes, ctx.Done(), netlink.RouteSubscribeOptions{ReceiveBufferSize: buf, ErrorCallback: errCB})
		}, func() { follow(ctx, ev, routes) }},
		{func() error {
			return netlink.LinkSubscribeWithOptions(links, ctx.Done(), netlink.LinkSubscribeOptions{ReceiveBufferSize: buf, ErrorCallback: errCB})
		}, func() { follow(ctx, ev, links) }},
		{func() error {
			return netlink.AddrSubscribeWithOptions(addrs, ctx.Done(), netlink.AddrSubscribeOptions{ReceiveBufferSize: buf, ErrorCallback: errCB})
		}, func() { follow(ctx, ev, addrs) }},
	}
	for _, sb := range subs {
		if err := sb.sub(); err != nil {
			ev.drain()
			return nil, fmt.Errorf("subscribe to route, link and address changes: %w", err)
		}
		sb.start()
	}
	var err error
	if ev.wifi, err = wifiEvents(ev.poke, ev.fail); err != nil {
		ev.wifi = func() {}
		ev.drain()
		return nil, err
	}
	return ev, nil
}

// follow kicks the debounce for each update on ch (in a goroutine of its
// own) until ctx ends, and has drain empty ch until its subscription,
// whose socket closes with ctx, closes it.
func follow[T any](ctx context.Context, ev *events, ch <-chan T) {
	go func() {
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
				ev.poke()
			case <-ctx.Done():
				return
			}
		}
	}()
	ev.drains = append(ev.drains, func() {
		for range ch {
		}
	})
}

// poke kicks the debounce (one pending kick is enough).
func (ev *events) poke() {
	select {
	case ev.kick <- struct{}{}:
	default:
	}
}

// fail ends the watch with err (the first one).
func (ev *events) fail(err error) {
	select {
	case ev.failed <- err:
	default:
	}
}

// drain ends the subscriptions: nl80211's reader, then the netlink
// sockets, whose channels it empties until their readers close them.
func (ev *events) drain() {
	ev.wifi()
	ev.stop()
	for _, d := range ev.drains {
		d()
	}
}
