// Package qmp is vmrun's QMP client: a thin wrapper around go-qemu's
// SocketMonitor that adds what it lacks — a deadline on the handshake and on
// every command, and one event reader that drains go-qemu's shared event
// channel from the moment it exists, so an unread event never blocks a
// later command.
package qmp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// Event names vmrun acts on.
const (
	EventShutdown      = "SHUTDOWN"
	EventReset         = "RESET"
	EventStop          = "STOP"
	EventGuestPanicked = "GUEST_PANICKED"
)

// ErrTimeout is returned when QEMU does not answer in time.
var ErrTimeout = errors.New("QEMU did not answer on QMP in time")

// Event is one asynchronous QMP event.
type Event struct {
	Name string
	Data map[string]any
	Time time.Time
}

// String returns the string field key of the event's data ("" if absent).
func (e Event) String(key string) string {
	s, _ := e.Data[key].(string)
	return s
}

// Client is a connected QMP session.
type Client struct {
	mon     *gqmp.SocketMonitor
	raw     *raw.Monitor
	events  chan Event
	done    chan struct{}
	once    sync.Once
	Version string
}

// eventBuffer is how many events may wait for the consumer before the
// reader blocks (and with it, QMP replies).
const eventBuffer = 256

// Connect connects to the QMP socket at path and completes the capabilities
// handshake, all within timeout; it gives up early when ctx ends. On return
// the event reader already runs: read Events() and nothing is lost.
func Connect(ctx context.Context, path string, timeout time.Duration) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mon, err := gqmp.NewSocketMonitor("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to QMP socket %s: %w", path, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- mon.Connect() }()
	select {
	case err := <-errc:
		if err != nil {
			_ = mon.Disconnect()
			return nil, fmt.Errorf("QMP handshake on %s: %w", path, err)
		}
	case <-ctx.Done():
		// Closing the connection unblocks Connect.
		_ = mon.Disconnect()
		<-errc
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("QMP handshake on %s: %w (%s)", path, ErrTimeout, timeout)
		}
		return nil, ctx.Err()
	}
	ch, err := mon.Events(context.Background())
	if err != nil {
		_ = mon.Disconnect()
		return nil, fmt.Errorf("QMP events on %s: %w", path, err)
	}
	c := &Client{
		mon:    mon,
		raw:    raw.NewMonitor(mon),
		events: make(chan Event, eventBuffer),
		done:   make(chan struct{}),
	}
	if mon.Version != nil {
		c.Version = mon.Version.String()
	}
	go c.read(ch)
	return c, nil
}

// read drains go-qemu's event channel until it closes (the connection
// ended), forwarding events to the buffered channel; after Close it keeps
// draining and drops them, so go-qemu's reader never blocks.
func (c *Client) read(ch <-chan gqmp.Event) {
	defer close(c.events)
	for e := range ch {
		ev := Event{
			Name: e.Event,
			Data: e.Data,
			Time: time.Unix(e.Timestamp.Seconds, e.Timestamp.Microseconds*1000),
		}
		select {
		case c.events <- ev:
		case <-c.done:
		}
	}
}

// Events returns the event channel; it is closed when the connection ends.
func (c *Client) Events() <-chan Event { return c.events }

// run runs f (a QMP command) with a deadline from ctx; on time-out the
// connection is closed, which makes f return.
func (c *Client) run(ctx context.Context, name string, f func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("QMP %s: %w", name, err)
		}
		return nil
	case <-ctx.Done():
		c.Close()
		<-errc
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("QMP %s: %w", name, ErrTimeout)
		}
		return fmt.Errorf("QMP %s: %w", name, ctx.Err())
	}
}

// Cont resumes a VM started with -S.
func (c *Client) Cont(ctx context.Context) error {
	return c.run(ctx, "cont", c.raw.Cont)
}

// SystemPowerdown presses the guest's ACPI power button.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.run(ctx, "system_powerdown", c.raw.SystemPowerdown)
}

// Quit tells QEMU to exit at once.
func (c *Client) Quit(ctx context.Context) error {
	return c.run(ctx, "quit", c.raw.Quit)
}

// Close ends the session. It is safe to call more than once and from any
// goroutine.
func (c *Client) Close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.mon.Disconnect()
	})
}
