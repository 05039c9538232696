package qga

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// fakeAgent speaks the agent's protocol on a unix socket (a protocol-level
// fake beside the real qemu-ga tests in test/e2e): it first writes what an
// earlier session left unread, then answers guest-sync-delimited after the
// 0xFF sentinel, and guest-exec / guest-exec-status as given.
func fakeAgent(t *testing.T, answers map[string]string) string {
	t.Helper()
	return scriptedAgent(t, func(name string, _ json.RawMessage) string { return answers[name] })
}

// scriptedAgent is fakeAgent with the answer to each command other than
// guest-sync-delimited given by answer, called in the order they come.
func scriptedAgent(t *testing.T, answer func(name string, args json.RawMessage) string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		// Leftovers: a stale answer and a stale sync reply.
		fmt.Fprint(conn, "{\"return\": {\"pid\": 1}}\n\xff{\"return\": 7}\n")
		r := bufio.NewReader(conn)
		for {
			b, err := r.ReadBytes('}')
			if err != nil {
				return
			}
			for len(b) > 0 && b[0] == 0xff {
				b = b[1:]
			}
			// Read until the JSON object is complete.
			var msg struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
			}
			for json.Unmarshal(b, &msg) != nil {
				more, err := r.ReadBytes('}')
				if err != nil {
					return
				}
				b = append(b, more...)
			}
			if msg.Execute == "guest-sync-delimited" {
				var a struct{ ID int64 }
				_ = json.Unmarshal(msg.Arguments, &a)
				fmt.Fprintf(conn, "\xff{\"return\": %d}\n", a.ID)
				continue
			}
			fmt.Fprintf(conn, "%s\n", answer(msg.Execute, msg.Arguments))
		}
	}()
	return path
}

func TestClientSyncExecStatus(t *testing.T) {
	path := fakeAgent(t, map[string]string{
		"guest-exec":        `{"return": {"pid": 4242}}`,
		"guest-exec-status": `{"return": {"exited": true, "exitcode": 0, "signal": 9, "out-data": "aGVsbG8K", "out-truncated": true}}`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := WaitAgent(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pid, err := c.Exec(ctx, ExecRequest{Path: "/bin/true", Input: []byte("x")})
	if err != nil || pid != 4242 {
		t.Fatalf("Exec: pid %d, %v", pid, err)
	}
	st, err := c.Status(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exited || st.Signal != 9 || string(st.Out) != "hello\n" || !st.OutTruncated {
		t.Fatalf("status %+v", st)
	}
	res, err := captured(st, Command{Stdout: discard{}, Stderr: discard{}})
	if err != nil || res.Code != 137 || len(res.Truncated) != 1 || res.Truncated[0] != "stdout" {
		t.Fatalf("captured: %+v, %v", res, err)
	}
}

func TestClientAgentError(t *testing.T) {
	path := fakeAgent(t, map[string]string{
		"guest-exec": `{"error": {"class": "GenericError", "desc": "Guest agent command failed"}}`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := WaitAgent(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Exec(ctx, ExecRequest{Path: "/nope"}); !errors.Is(err, ErrAgent) {
		t.Fatalf("err %v, want ErrAgent", err)
	}
}

// TestSyncNoAgent: nobody answers (the guest has no agent): Sync gives up
// when ctx ends, with ErrNoAnswer.
func TestSyncNoAgent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := WaitAgent(ctx, path); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err %v, want ErrNoAnswer", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestForget: an earlier command's pid stays pending only while the agent
// says it still runs (or cannot be asked); an agent error means the agent
// no longer knows it; the running command's own pid is never asked.
func TestForget(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   []int
	}{
		{`{"return": {"exited": true, "exitcode": 0}}`, nil},
		{`{"return": {"exited": false}}`, []int{11, 12}},
		{`{"error": {"class": "GenericError", "desc": "Invalid parameter 'pid'"}}`, nil},
	} {
		path := fakeAgent(t, map[string]string{"guest-exec-status": tc.status})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := WaitAgent(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.forget(ctx, []int{11, 99, 12}, 99); err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("status %s: pending %v (%v), want %v", tc.status, got, err, tc.want)
		}
		c.Close()
		cancel()
	}
}

// TestForgetNotCutShort: Ctrl-C while an earlier pid's status is asked
// does not leave its answer to be read as the next question's.
func TestForgetNotCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		var req struct {
			Arguments struct{ ID, PID int64 } `json:"arguments"`
		}
		for i := 0; ; i++ {
			b, err := r.ReadBytes('}')
			if err != nil {
				return
			}
			more, err := r.ReadBytes('}') // the arguments' object ends first
			if err != nil {
				return
			}
			if err := json.Unmarshal(bytes.TrimLeft(append(b, more...), "\xff"), &req); err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			switch i {
			case 0: // guest-sync-delimited
				fmt.Fprintf(conn, "\xff{\"return\": %d}\n", req.Arguments.ID)
			case 1: // the earlier pid's status: answered after Ctrl-C
				cancel()
				fmt.Fprint(conn, `{"return": {"exited": false}}`+"\n")
			default: // the next question: its own answer
				fmt.Fprintf(conn, "{\"return\": {\"exited\": true, \"exitcode\": %d}}\n", req.Arguments.PID)
			}
		}
	}()
	c, err := WaitAgent(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pending, err := c.forget(ctx, []int{11}, 99)
	if err != nil || !reflect.DeepEqual(pending, []int{11}) {
		t.Fatalf("forget: %v, %v; want [11] still pending", pending, err)
	}
	if ctx.Err() == nil {
		t.Fatal("the fake agent did not cancel")
	}
	st, err := c.Status(context.Background(), 42)
	if err != nil || !st.Exited || st.ExitCode != 42 {
		t.Fatalf("the next question got %+v, %v; want its own answer", st, err)
	}
}

// TestRunCtrlCWhileAsked: Ctrl-C while the agent is asked to start the
// command, or for its status, still sends the command SIGTERM, and its own
// exit code (143) comes back, the question's answer not read as another's.
func TestRunCtrlCWhileAsked(t *testing.T) {
	for _, when := range []string{"guest-exec", "guest-exec-status"} {
		t.Run(when, func(t *testing.T) { ctrlCWhileAsked(t, when) })
	}
}

func ctrlCWhileAsked(t *testing.T, when string) {
	outHost, outGuest := net.Pipe()
	errHost, errGuest := net.Pipe()
	defer outGuest.Close()
	defer errGuest.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The guest's side of each exec port, written in order.
	outW, errW := make(chan string, 2), make(chan string, 2)
	defer close(outW)
	defer close(errW)
	for _, p := range []struct {
		c  net.Conn
		in chan string
	}{{outGuest, outW}, {errGuest, errW}} {
		go func() {
			for s := range p.in {
				fmt.Fprint(p.c, s)
			}
		}()
	}
	var nonce string
	killed := make(chan []string, 1)
	path := scriptedAgent(t, func(name string, raw json.RawMessage) string {
		var a struct {
			Arg []string `json:"arg"`
			PID int      `json:"pid"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if name == when && ctx.Err() == nil {
			cancel() // Ctrl-C while the question is in flight
		}
		switch {
		case name == "guest-exec" && nonce == "": // the wrapper, args -c SCRIPT $0 NONCE ...
			nonce = a.Arg[3]
			outW <- fmt.Sprintf(beginMark, nonce)
			errW <- fmt.Sprintf(beginMark, nonce)
			return `{"return": {"pid": 100}}`
		case name == "guest-exec": // the SIGTERM, passed on by the wrapper
			killed <- a.Arg
			outW <- fmt.Sprintf(endMark+"143\n", nonce)
			errW <- fmt.Sprintf(endMark+"143\n", nonce)
			return `{"return": {"pid": 101}}`
		case name == "guest-exec-status":
			return fmt.Sprintf(`{"return": {"exited": %t, "exitcode": 0}}`, a.PID != 100)
		}
		t.Errorf("unexpected %s %s", name, raw)
		return `{"error": {"class": "GenericError", "desc": "unexpected"}}`
	})
	c, err := WaitAgent(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.run(ctx, Command{Argv: []string{"sleep", "600"}, Stdout: discard{}, Stderr: discard{}, NoReap: true}, outHost, errHost)
	if !errors.Is(err, context.Canceled) || !res.Ended || res.Code != 143 {
		t.Fatalf("run: %+v, %v; want the command ended with 143 and context.Canceled", res, err)
	}
	select {
	case arg := <-killed:
		if arg[len(arg)-1] != "100" {
			t.Fatalf("SIGTERM sent with %q, want to pid 100", arg)
		}
	default:
		t.Fatal("the command was not sent SIGTERM")
	}
}

// TestUncutBounded: a question asked under uncut outlives ctx's end by the
// grace given, no more, and then says the agent did not answer.
func TestUncutBounded(t *testing.T) {
	gone := make(chan struct{})
	defer close(gone)
	path := scriptedAgent(t, func(name string, _ json.RawMessage) string {
		<-gone // no answer while the test runs
		return ""
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := WaitAgent(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	qctx, release := uncut(ctx, 100*time.Millisecond)
	defer release()
	go func() {
		_, err := c.Status(qctx, 1)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNoAnswer) {
			t.Fatalf("err %v, want ErrNoAnswer", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the question was not given up after its grace")
	}
}

// TestRunStatusBounded: an agent that stops answering while the command
// runs (a hung guest) ends the run with ErrNoAnswer within termWait of
// the unanswered status question, without Ctrl-C or --timeout.
func TestRunStatusBounded(t *testing.T) {
	outHost, outGuest := net.Pipe()
	errHost, errGuest := net.Pipe()
	defer outGuest.Close()
	defer errGuest.Close()
	gone := make(chan struct{})
	defer close(gone)
	path := scriptedAgent(t, func(name string, _ json.RawMessage) string {
		if name == "guest-exec" {
			return `{"return": {"pid": 100}}`
		}
		<-gone // status: no answer while the test runs
		return ""
	})
	c, err := WaitAgent(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.run(context.Background(), Command{Argv: []string{"sleep", "600"}, Stdout: discard{}, Stderr: discard{}}, outHost, errHost)
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNoAnswer) {
			t.Fatalf("run: %v, want ErrNoAnswer", err)
		}
	case <-time.After(termWait + time.Minute):
		t.Fatalf("run still waits %s after its start on an agent that does not answer", termWait+time.Minute)
	}
}
