// Package console makes a detached VM's serial console reachable: the
// supervisor serves it on a unix socket in the VM's runtime directory
// (Server), `vmrun console` attaches a terminal to it (Attach), and
// `vmrun logs -f` follows the console log the supervisor writes (Follow).
//
// The supervisor stays the only reader of QEMU's serial output: it writes
// the log and keeps the tail of a failure report as for a foreground run,
// and copies the output to the one attached client.
package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Socket and Log are the names of the console's socket and log in a VM's
// runtime directory.
const (
	Socket = "console.sock"
	Log    = "console.log"
)

// Escape is the byte that detaches a client: Ctrl-], as in telnet and
// virsh console.
const Escape = 0x1d

// The handshake: the server's first line to a client.
const (
	helloOK   = "vmrun-console ok"
	helloBusy = "vmrun-console busy"
)

// ErrBusy means another client is attached to the console.
var ErrBusy = errors.New("another vmrun console is attached to it")

// clientWriteWait bounds a write to the attached client: a client that
// does not read its output is dropped rather than stalling the guest's
// serial port.
const clientWriteWait = 2 * time.Second

// Server serves a VM's serial console to one client at a time. Its Write
// copies the console's output to the attached client (if any); Input is
// what the clients type, for QEMU's serial input.
type Server struct {
	ln   *net.UnixListener
	inR  *io.PipeReader
	inW  *io.PipeWriter
	mu   sync.Mutex
	conn net.Conn // the attached client; nil: none
	done chan struct{}
}

// Serve listens on the unix socket path (a stale socket file there is
// replaced) and serves clients until Close.
func Serve(path string) (*Server, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stale console socket %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	s := &Server{ln: ln, done: make(chan struct{})}
	s.inR, s.inW = io.Pipe()
	go s.accept()
	return s, nil
}

// Input is what attached clients type, in order.
func (s *Server) Input() io.Reader { return s.inR }

// accept attaches each client in turn; one that comes while another is
// attached is told so and closed.
func (s *Server) accept() {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		busy := s.conn != nil
		if !busy {
			s.conn = c
		}
		s.mu.Unlock()
		if busy {
			_ = c.SetWriteDeadline(time.Now().Add(clientWriteWait))
			_, _ = io.WriteString(c, helloBusy+"\n")
			c.Close()
			continue
		}
		go s.serve(c)
	}
}

// serve greets the client and copies what it types to the console's
// input until it detaches.
func (s *Server) serve(c net.Conn) {
	defer s.drop(c)
	_ = c.SetWriteDeadline(time.Now().Add(clientWriteWait))
	if _, err := io.WriteString(c, helloOK+"\n"); err != nil {
		return
	}
	_, _ = io.Copy(s.inW, c)
}

// drop detaches c, if it is still the attached client.
func (s *Server) drop(c net.Conn) {
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	s.mu.Unlock()
	c.Close()
}

// Write copies p to the attached client; a client that cannot take it
// within clientWriteWait is dropped. It never fails.
func (s *Server) Write(p []byte) (int, error) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		_ = c.SetWriteDeadline(time.Now().Add(clientWriteWait))
		if _, err := c.Write(p); err != nil {
			s.drop(c)
		}
	}
	return len(p), nil
}

// Close stops serving: it closes the socket and the attached client, and
// ends Input.
func (s *Server) Close() error {
	err := s.ln.Close()
	<-s.done
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		s.drop(c)
	}
	s.inW.Close()
	return err
}

// hello reads the server's first line: nil when the client is attached.
func hello(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("no answer from the console server: %w", err)
	}
	switch strings.TrimSpace(line) {
	case helloOK:
		return nil
	case helloBusy:
		return ErrBusy
	}
	return fmt.Errorf("unexpected answer from the console server: %q", line)
}
