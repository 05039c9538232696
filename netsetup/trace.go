package netsetup

import (
	"context"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Trace observes Apply as it goes, for verbose logs and crash tests.
// Attach it to Apply's context with WithTrace.
type Trace = hostnet.Trace

// WithTrace returns a context that makes Apply report to t.
func WithTrace(ctx context.Context, t *Trace) context.Context { return hostnet.WithTrace(ctx, t) }
