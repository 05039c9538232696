package hostnet

import "context"

// Trace observes Apply as it goes, for verbose logs and crash tests.
// Attach it to Apply's context with WithTrace.
type Trace struct {
	// Step is called after each step of Apply succeeded, with the step's
	// name ("record", "create", "open queues", ...).
	Step func(name string)
	// Event is called for things worth a log line that are not steps
	// ("deleted stale link vmr…m left by a previous run").
	Event func(msg string)
	// Notice is called for what the user must hear while the VM runs,
	// verbose or not ("guest address 192.168.1.57 registered", "wlan0's
	// MAC changed: ..."). Background services of an attachment report here.
	Notice func(msg string)
}

type traceKey struct{}

// WithTrace returns a context that makes Apply report to t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom returns the Trace attached to ctx, or nil.
func TraceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// ReportStep calls Step, if set.
func (t *Trace) ReportStep(name string) {
	if t != nil && t.Step != nil {
		t.Step(name)
	}
}

// ReportNotice calls Notice, if set.
func (t *Trace) ReportNotice(msg string) {
	if t != nil && t.Notice != nil {
		t.Notice(msg)
	}
}

// ReportEvent calls Event, if set.
func (t *Trace) ReportEvent(msg string) {
	if t != nil && t.Event != nil {
		t.Event(msg)
	}
}
