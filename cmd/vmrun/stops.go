package main

import (
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// stopSignals stop a run: cleanly, or at once for SIGQUIT (vmrun stop
// --force, Ctrl-\).
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// brokenPipes receives the SIGPIPEs of a run, which nothing reads: a
// write to a closed pipe (`vmrun ... | head`, a log collector that died)
// then fails with EPIPE instead of killing vmrun before it has removed
// what it created. It stays in place until the process exits, so that the
// last error message cannot kill it either. QEMU, which vmrun starts with
// the default action, ignores SIGPIPE itself.
var brokenPipes = make(chan os.Signal, 1)

// earlyStops catches a run's stop signals from main on, while the command
// line is parsed: the runtime's first signal.Notify of a signal waits for
// its signal-mask thread (0.36–0.56 ms for these four on the 2-CPU
// development VM), which would otherwise lie between the run's start and
// its network plan. SIGPIPE is caught after them, and waited for only
// before the run creates anything (pipesCaught) or ends.
type earlyStops struct {
	c     chan os.Signal
	ready chan struct{} // the stop signals are caught
	pipes chan struct{} // SIGPIPE is caught too
	taken bool
}

// stopsKey is where the App's Metadata holds a run's earlyStops.
const stopsKey = "vmrun.stops"

// catchStopsEarly starts catching stop signals when args run a VM (no
// command, or `run`) and show no help; nil otherwise. The run takes them
// (takeStops); otherwise releaseStops or release gives them back.
func catchStopsEarly(app *cli.App, args []string) *earlyStops {
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") && args[1] != "run" || helpMayShow(args) {
		return nil
	}
	e := &earlyStops{c: make(chan os.Signal, 4), ready: make(chan struct{}), pipes: make(chan struct{})}
	go func() {
		signal.Notify(e.c, stopSignals...)
		close(e.ready)
		signal.Notify(brokenPipes, syscall.SIGPIPE)
		close(e.pipes)
	}()
	app.Metadata = map[string]any{stopsKey: e}
	return e
}

// takeStops returns the channel of the run's stop signals (the early
// catch's once it is in place, or a new one), which the run stops, and
// pipesCaught, which returns once its SIGPIPEs are caught as well.
func takeStops(c *cli.Context) (sigc chan os.Signal, pipesCaught func()) {
	if e, ok := c.App.Metadata[stopsKey].(*earlyStops); ok && !e.taken {
		<-e.ready
		e.taken = true
		return e.c, func() { <-e.pipes }
	}
	sigc = make(chan os.Signal, 4)
	signal.Notify(sigc, stopSignals...)
	signal.Notify(brokenPipes, syscall.SIGPIPE)
	return sigc, func() {}
}

// release gives the stop signals and SIGPIPE back (their default action,
// or another handler's) unless a run took them; after a run, it returns
// once SIGPIPE is caught, so that the run's error line cannot kill it.
func (e *earlyStops) release() {
	if e == nil {
		return
	}
	<-e.ready
	<-e.pipes
	if !e.taken {
		signal.Stop(e.c)
		signal.Stop(brokenPipes)
		e.taken = true
	}
}

// releaseStops is the App's Before: a command given after the run's
// options (`vmrun --verbose ls`) is not a run.
func releaseStops(c *cli.Context) error {
	if e, ok := c.App.Metadata[stopsKey].(*earlyStops); ok && c.Args().Present() && c.Args().First() != "run" {
		e.release()
	}
	return nil
}
