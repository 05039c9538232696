package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
)

// startQEMU starts a real, paused QEMU whose monitor listens on a socket
// passed as fd 3, as vmrun does, and returns the socket path.
func startQEMU(t *testing.T) (string, *exec.Cmd, <-chan error) {
	t.Helper()
	qemu := testutil.RequireQEMU(t)
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	// Closing a Go listener unlinks its socket file: keep it until the end.
	t.Cleanup(func() { ln.Close() })
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(qemu, "-nodefaults", "-S", "-display", "none", "-machine", "q35,accel=tcg", "-m", "64",
		"-chardev", "socket,id=qmp,fd=3,server=on,wait=off", "-mon", "chardev=qmp,mode=control")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitc := make(chan error, 1)
	done := make(chan struct{})
	go func() { waitc <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done: // already reaped: its pid may belong to someone else now
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return path, cmd, waitc
}

func TestRealQEMULifecycle(t *testing.T) {
	path, _, waitc := startQEMU(t)
	ctx := context.Background()
	c, err := Connect(ctx, path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Version == "" {
		t.Error("no QEMU version from the greeting")
	}
	if st, err := queryStatus(ctx, c); err != nil || st != "prelaunch" && st != "paused" {
		t.Fatalf("status before cont = %q, %v", st, err)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := queryStatus(ctx, c); err != nil || st != "running" {
		t.Fatalf("status after cont = %q, %v", st, err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	var got []Event
	for ev := range c.Events() {
		got = append(got, ev)
	}
	var shut *Event
	for i := range got {
		if got[i].Name == EventShutdown {
			shut = &got[i]
		}
	}
	if shut == nil || shut.Data["guest"] != false || shut.String("reason") != "host-qmp-quit" {
		t.Fatalf("events %+v: want SHUTDOWN guest=false reason=host-qmp-quit", got)
	}
	if err := <-waitc; err != nil {
		t.Fatalf("QEMU exit: %v", err)
	}
}

// TestManyEventsDoNotBlockCommands sends commands while the guest produces
// events nobody reads yet: the buffered reader must keep commands flowing.
func TestManyEventsDoNotBlockCommands(t *testing.T) {
	path, _, _ := startQEMU(t)
	ctx := context.Background()
	c, err := Connect(ctx, path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Each stop/cont pair makes a STOP and a RESUME event; nobody reads them.
	for i := 0; i < 50; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := c.Cont(cctx); err != nil {
			cancel()
			t.Fatalf("cont #%d: %v", i, err)
		}
		_, err := queryStatus(cctx, c)
		cancel()
		if err != nil {
			t.Fatalf("query-status #%d: %v", i, err)
		}
		if _, err := c.mon.Run([]byte(`{"execute":"stop"}`)); err != nil {
			t.Fatalf("stop #%d: %v", i, err)
		}
	}
	n := 0
	for len(c.Events()) > 0 {
		<-c.Events()
		n++
	}
	if n < 50 {
		t.Fatalf("only %d events buffered", n)
	}
}

// TestConnectDeadline: a socket that accepts but never greets must not
// block Connect beyond its time-out.
func TestConnectDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mute.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server holds the connection, silent, until the test ends: only
	// Connect's own deadline can end the handshake.
	end := make(chan struct{})
	defer close(end)
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			defer conn.Close()
			<-end
		}
	}()
	errc := make(chan error, 1)
	go func() {
		_, err := Connect(context.Background(), path, 300*time.Millisecond)
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Connect to a mute socket: %v, want ErrTimeout", err)
		}
	case <-time.After(hangBound):
		t.Fatalf("Connect to a mute socket did not return within %s despite a 300ms deadline", hangBound)
	}
}

// hangBound is how long a test waits for a call with a short deadline to
// return before calling it hung: generous, so that a loaded machine does
// not fail a call that honoured its deadline.
const hangBound = time.Minute

// TestCommandDeadline: a QMP server that greets but never answers a
// command must not hang the caller.
func TestCommandDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server holds the connection until the test ends: only the
	// command's own deadline can end the wait for its answer.
	end := make(chan struct{})
	defer close(end)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		conn.Write([]byte(`{"QMP":{"version":{"qemu":{"major":7,"minor":2,"micro":0},"package":""},"capabilities":[]}}` + "\n"))
		r.ReadString('\n') // qmp_capabilities
		conn.Write([]byte(`{"return":{}}` + "\n"))
		r.ReadString('\n') // the command: never answered
		<-end
	}()
	c, err := Connect(context.Background(), path, hangBound)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		errc <- c.SystemPowerdown(ctx)
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("SystemPowerdown: %v, want ErrTimeout", err)
		}
	case <-time.After(hangBound):
		t.Fatalf("SystemPowerdown to a server that never answers did not return within %s despite a 200ms deadline", hangBound)
	}
	// The client closed the connection itself (the server still holds it).
	select {
	case _, ok := <-c.Events():
		if ok {
			t.Fatal("an event from a server that sends none")
		}
	case <-time.After(hangBound):
		t.Fatalf("events channel still open %s after the timed-out command", hangBound)
	}
}

func TestConnectNoSocket(t *testing.T) {
	_, err := Connect(context.Background(), filepath.Join(t.TempDir(), "none.sock"), time.Second)
	if err == nil {
		t.Fatal("Connect to a missing socket succeeded")
	}
}

func TestEventAccessors(t *testing.T) {
	e := Event{Name: EventShutdown, Data: map[string]any{"guest": true, "reason": "guest-shutdown", "n": 1}}
	if e.String("reason") != "guest-shutdown" || e.String("n") != "" || e.String("missing") != "" {
		t.Fatalf("accessors wrong on %+v", e)
	}
}

// queryStatus returns QEMU's run state ("running", "paused", "prelaunch",
// ...), with raw JSON because go-qemu's generated RunState enum predates
// several current states.
func queryStatus(ctx context.Context, c *Client) (string, error) {
	var out []byte
	err := c.run(ctx, "query-status", func() error {
		var err error
		out, err = c.mon.Run([]byte(`{"execute":"query-status"}`))
		return err
	})
	if err != nil {
		return "", err
	}
	var r struct {
		Return struct {
			Status string `json:"status"`
		} `json:"return"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return "", fmt.Errorf("QMP query-status: %w", err)
	}
	return r.Return.Status, nil
}
