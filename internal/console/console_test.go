package console

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
)

const wait = 10 * time.Second

// attach runs Attach with a pipe as its input; it returns the input's
// writer, the output, and the channel that gets Attach's result.
func attach(t *testing.T, sock string) (*os.File, *testutil.LineBuffer, chan error, chan bool) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	out := testutil.NewLineBuffer()
	errc, leftc := make(chan error, 1), make(chan bool, 1)
	go func() {
		left, err := Attach(sock, r, out)
		leftc <- left
		errc <- err
	}()
	return w, out, errc, leftc
}

// TestServeAttach: what the client types reaches the console's input up to
// Ctrl-], the console's output reaches the client, a second client is
// refused while one is attached, and closing the server ends the session.
func TestServeAttach(t *testing.T) {
	sock := filepath.Join(t.TempDir(), Socket)
	srv, err := Serve(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	input := bufio.NewReader(srv.Input())

	in, out, errc, leftc := attach(t, sock)
	if _, err := in.WriteString("echo hi\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := input.ReadString('\n'); err != nil || line != "echo hi\n" {
		t.Fatalf("console input %q, %v", line, err)
	}
	if _, err := srv.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := out.WaitFor(`(?m)^hi$`, wait); err != nil {
		t.Fatal(err)
	}
	_, _, errc2, _ := attach(t, sock)
	if err := <-errc2; !errors.Is(err, ErrBusy) {
		t.Fatalf("second client: %v, want ErrBusy", err)
	}
	if _, err := in.WriteString("tail\x1dnot sent\n"); err != nil {
		t.Fatal(err)
	}
	if left, err := <-leftc, <-errc; !left || err != nil {
		t.Fatalf("Ctrl-]: left %v, %v", left, err)
	}
	if b := make([]byte, 4); func() error { _, err := io.ReadFull(input, b); return err }() != nil || string(b) != "tail" {
		t.Fatalf("input before Ctrl-]: %q", b)
	}
	srv.Close()
	if rest, err := io.ReadAll(input); err != nil || len(rest) != 0 {
		t.Fatalf("input after Ctrl-]: %q, %v", rest, err)
	}
}

// TestCloseEndsSession: when the VM stops (the server closes), the client
// returns, saying it did not leave by itself.
func TestCloseEndsSession(t *testing.T) {
	sock := filepath.Join(t.TempDir(), Socket)
	srv, err := Serve(sock)
	if err != nil {
		t.Fatal(err)
	}
	in, _, errc, leftc := attach(t, sock)
	if _, err := in.WriteString("x\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(srv.Input()).ReadString('\n'); err != nil || line != "x\n" {
		t.Fatalf("console input %q, %v", line, err)
	}
	srv.Close()
	if left, err := <-leftc, <-errc; left || err != nil {
		t.Fatalf("after Close: left %v, %v", left, err)
	}
}

// TestFollow: Follow prints the log, then what is appended, and returns
// once the log is removed.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, Log)
	if err := os.WriteFile(log, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := testutil.NewLineBuffer()
	done := make(chan error, 1)
	go func() { done <- Follow(context.Background(), dir, out) }()
	if _, err := out.WaitFor(`(?m)^first$`, wait); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("second\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := out.WaitFor(`(?m)^second$`, wait); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("last\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || !strings.HasSuffix(out.String(), "second\nlast\n") {
			t.Fatalf("Follow: %v, output %q", err, out.String())
		}
	case <-time.After(wait):
		t.Fatal("Follow did not return when the log was removed")
	}
	// Cancelled: it returns at once.
	if err := os.WriteFile(log, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- Follow(ctx, dir, out) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("cancelled Follow: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Follow did not return when cancelled")
	}
}

// TestKeep: a stopped VM's logs move out of its runtime directory into
// LastDir, replacing an earlier run's, and an open log keeps being written.
func TestKeep(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "vm1")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := LastDir(root, "vm1")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "stale.log"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, Log))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("boot\n"); err != nil {
		t.Fatal(err)
	}
	if err := Keep(root, "vm1", dir, Log, "never-written.log"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("halt\n"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(old, Log))
	if err != nil || string(got) != "boot\nhalt\n" {
		t.Fatalf("kept log = %q, %v; want both lines", got, err)
	}
	if _, err := os.Stat(filepath.Join(old, "stale.log")); !os.IsNotExist(err) {
		t.Fatalf("an earlier run's file survived: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, Log)); !os.IsNotExist(err) {
		t.Fatalf("the log is still in the runtime directory: %v", err)
	}
}
