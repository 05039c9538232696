// Package qga is vmrun's client for the QEMU guest agent (qemu-ga) on the
// unix socket vmrun hands QEMU for the agent's virtio-serial port. The
// agent's protocol is QMP-like JSON, one request at a time; every session
// starts with guest-sync-delimited, which also tells when the agent is up:
// QEMU holds the request until the guest opens the port, so waiting for the
// answer needs no polling.
package qga

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"
)

// Errors of the agent client.
var (
	// ErrAgent is returned when the agent answers a command with an error.
	ErrAgent = errors.New("guest agent error")
	// ErrNoAnswer is returned when the agent does not answer in time.
	ErrNoAnswer = errors.New("the guest agent did not answer")
)

// Client is a session with the guest agent.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	path string
}

// Dial connects to the agent's socket at path (it does not wait for the
// agent: call Sync).
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("guest agent socket %s: %w", path, err)
	}
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), path: path}, nil
}

// Close ends the session.
func (c *Client) Close() error { return c.conn.Close() }

// deadline makes blocking I/O on the connection end when ctx does.
func (c *Client) deadline(ctx context.Context) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(d)
	} else {
		_ = c.conn.SetDeadline(time.Time{})
	}
	return context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
}

// Sync waits until the agent answers, discarding whatever an earlier
// session left unread: it sends the 0xFF sentinel (which resets the agent's
// parser) and guest-sync-delimited with a fresh id, skips input up to the
// agent's 0xFF, and reads answers until the one with that id.
func (c *Client) Sync(ctx context.Context) error {
	stop := c.deadline(ctx)
	defer stop()
	id := rand.Int64N(1 << 50)
	req := fmt.Sprintf(`{"execute":"guest-sync-delimited","arguments":{"id":%d}}`, id)
	if _, err := c.conn.Write(append([]byte{0xff}, req...)); err != nil {
		return c.ioError(ctx, "guest-sync-delimited", err)
	}
	for {
		if _, err := c.r.ReadBytes(0xff); err != nil {
			return c.ioError(ctx, "guest-sync-delimited", err)
		}
		var got int64
		if err := c.read(&got); err != nil {
			if errors.Is(err, ErrAgent) {
				return err
			}
			if _, ok := err.(*json.SyntaxError); ok {
				continue
			}
			return c.ioError(ctx, "guest-sync-delimited", err)
		}
		if got == id {
			return nil
		}
	}
}

// response is one answer of the agent.
type response struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// read decodes the next answer into out.
func (c *Client) read(out any) error {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return fmt.Errorf("%w: %s", ErrAgent, r.Error.Desc)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Return, out)
}

// call sends one command and decodes its answer.
func (c *Client) call(ctx context.Context, name string, args any, out any) error {
	stop := c.deadline(ctx)
	defer stop()
	msg := map[string]any{"execute": name}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := c.conn.Write(b); err != nil {
		return c.ioError(ctx, name, err)
	}
	if err := c.read(out); err != nil {
		if errors.Is(err, ErrAgent) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return c.ioError(ctx, name, err)
	}
	return nil
}

func (c *Client) ioError(ctx context.Context, name string, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return context.Cause(ctx) // uncut's own cause when it gave up
	}
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		// ctx's deadline (the connection's deadline is the same instant).
		return fmt.Errorf("%s on %s: %w", name, c.path, ErrNoAnswer)
	}
	return fmt.Errorf("%s on %s: %w", name, c.path, err)
}

// ExecRequest is a guest-exec request.
type ExecRequest struct {
	Path    string   `json:"path"`
	Args    []string `json:"arg,omitempty"`
	Env     []string `json:"env,omitempty"`
	Input   []byte   `json:"-"`
	Capture bool     `json:"capture-output"`
}

// Exec starts a process in the guest and returns its pid.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (int, error) {
	args := struct {
		ExecRequest
		InputData string `json:"input-data,omitempty"`
	}{ExecRequest: req}
	if len(req.Input) > 0 {
		args.InputData = base64.StdEncoding.EncodeToString(req.Input)
	}
	var out struct {
		PID int `json:"pid"`
	}
	if err := c.call(ctx, "guest-exec", args, &out); err != nil {
		return 0, err
	}
	return out.PID, nil
}

// ExecStatus is a guest-exec-status answer.
type ExecStatus struct {
	Exited       bool
	ExitCode     int
	Signal       int
	Out, Err     []byte
	OutTruncated bool
	ErrTruncated bool
}

// Status returns the state of a process started by Exec. Once it reports
// Exited, the agent forgets the process.
func (c *Client) Status(ctx context.Context, pid int) (ExecStatus, error) {
	var out struct {
		Exited       bool   `json:"exited"`
		ExitCode     *int   `json:"exitcode"`
		Signal       *int   `json:"signal"`
		OutData      string `json:"out-data"`
		ErrData      string `json:"err-data"`
		OutTruncated bool   `json:"out-truncated"`
		ErrTruncated bool   `json:"err-truncated"`
	}
	if err := c.call(ctx, "guest-exec-status", map[string]int{"pid": pid}, &out); err != nil {
		return ExecStatus{}, err
	}
	st := ExecStatus{Exited: out.Exited, OutTruncated: out.OutTruncated, ErrTruncated: out.ErrTruncated}
	if out.ExitCode != nil {
		st.ExitCode = *out.ExitCode
	}
	if out.Signal != nil {
		st.Signal = *out.Signal
	}
	var err error
	if st.Out, err = base64.StdEncoding.DecodeString(out.OutData); err != nil {
		return st, fmt.Errorf("guest-exec-status: out-data: %w", err)
	}
	if st.Err, err = base64.StdEncoding.DecodeString(out.ErrData); err != nil {
		return st, fmt.Errorf("guest-exec-status: err-data: %w", err)
	}
	return st, nil
}
