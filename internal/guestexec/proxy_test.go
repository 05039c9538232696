package guestexec

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmrun/vmrun/qga"
)

// TestAgentProxy stands in for QEMU on the socketpair's other end: each
// line it reads is answered with "ok " + the line. Sessions one after the
// other get their own answers, and QEMU's end never sees the host side
// end between them (qemu-ga would sleep 100 ms if it did).
func TestAgentProxy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	p, qemuFile, err := newAgentProxy(ln)
	if err != nil {
		t.Fatal(err)
	}
	p.Serve()
	qemu, err := net.FileConn(qemuFile)
	qemuFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer qemu.Close()
	ended := make(chan error, 1)
	go func() {
		r := bufio.NewReader(qemu)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				ended <- err
				return
			}
			if _, err := qemu.Write([]byte("ok " + line)); err != nil {
				ended <- err
				return
			}
		}
	}()

	for _, req := range []string{"one\n", "two\n", "three\n"} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != "ok "+req {
			t.Fatalf("session %q: got %q, %v", req, got, err)
		}
		c.Close()
		select {
		case err := <-ended:
			t.Fatalf("QEMU's end saw the host side end after session %q: %v", req, err)
		default:
		}
	}

	// Close ends QEMU's connection and the listener.
	p.Close()
	if err := <-ended; err == nil {
		t.Fatal("QEMU's end still open after Close")
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Fatal("qga.sock still accepts after Close")
	}
}

// TestLateAnswerBeforeNextSync: the supervisor's question gives up (its
// context ends) while the agent is still working on
// guest-network-get-interfaces; the agent's late answer then reaches the
// next session, a `vmrun exec` client of qga.sock. That session still
// reads its own answers: the agent answers in order (qemu-ga handles one
// request at a time and writes each answer before reading the next), so
// the late answer comes before the answer to the session's
// guest-sync-delimited, which skips it.
func TestLateAnswerBeforeNextSync(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	p, qemuFile, err := newAgentProxy(ln)
	if err != nil {
		t.Fatal(err)
	}
	p.Serve()
	defer p.Close()
	qemu, err := net.FileConn(qemuFile)
	qemuFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer qemu.Close()
	asked := make(chan struct{}) // the agent has the question
	go inOrderAgent(t, qemu, asked)

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-asked; cancel() }()
	ch := &Channel{proxy: p}
	if addrs, err := ch.ask(ctx, time.Minute); err == nil {
		t.Fatalf("the question was answered (%v): the agent was to answer after it gave up", addrs)
	}

	// The next session: served once the question's session has ended; the
	// agent answers the question only after this session's sync came.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	c, err := qga.WaitAgent(ctx2, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(ctx2, 42)
	if err != nil || !st.Exited || st.ExitCode != 42 {
		t.Fatalf("the next session got %+v, %v; want its own answer (exit code 42)", st, err)
	}
}

// inOrderAgent answers like qemu-ga, one request after the other, on
// QEMU's end of the proxy: guest-sync-delimited with its id after 0xFF,
// guest-exec-status with the pid as the exit code, and
// guest-network-get-interfaces only once the next request has come (after
// closing asked).
func inOrderAgent(t *testing.T, qemu net.Conn, asked chan<- struct{}) {
	type request struct {
		Execute   string `json:"execute"`
		Arguments struct {
			ID  int64 `json:"id"`
			PID int   `json:"pid"`
		} `json:"arguments"`
	}
	reqs := make(chan request)
	go func() {
		defer close(reqs)
		dec := json.NewDecoder(dropSentinel{qemu})
		for {
			var r request
			if err := dec.Decode(&r); err != nil {
				return
			}
			reqs <- r
		}
	}()
	answer := func(r request) {
		switch r.Execute {
		case "guest-sync-delimited":
			fmt.Fprintf(qemu, "\xff{\"return\": %d}\n", r.Arguments.ID)
		case "guest-exec-status":
			fmt.Fprintf(qemu, "{\"return\": {\"exited\": true, \"exitcode\": %d}}\n", r.Arguments.PID)
		default:
			t.Errorf("fake agent: unexpected request %q", r.Execute)
		}
	}
	for r := range reqs {
		if r.Execute != "guest-network-get-interfaces" {
			answer(r)
			continue
		}
		close(asked)
		next, ok := <-reqs
		fmt.Fprint(qemu, `{"return": [{"name": "eth0", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "192.0.2.7", "prefix": 24}]}]}`+"\n")
		if !ok {
			return
		}
		answer(next)
	}
}

// dropSentinel reads r without the 0xFF bytes (the sentinel before
// guest-sync-delimited, which resets qemu-ga's parser).
type dropSentinel struct{ r io.Reader }

func (d dropSentinel) Read(b []byte) (int, error) {
	for {
		n, err := d.r.Read(b)
		out := b[:0]
		for _, c := range b[:n] {
			if c != 0xff {
				out = append(out, c)
			}
		}
		if len(out) > 0 || err != nil {
			return len(out), err
		}
	}
}
