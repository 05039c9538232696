package guestexec

import (
	"bufio"
	"net"
	"path/filepath"
	"testing"
	"time"
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
