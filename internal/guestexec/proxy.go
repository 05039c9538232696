package guestexec

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// agentProxy is the supervisor's one connection to QEMU's agent chardev
// (one end of a socketpair; QEMU holds the other, connected from its
// start) and serves the clients of qga.sock on it, one at a time, in the
// order they connect.
//
// Why a connection that outlives each session: qemu-ga cannot tell "no
// host connected" from "the host went away" on virtio-serial, and after
// reading the end of the host's connection it sleeps 100 ms before it
// reads again. With QEMU serving qga.sock itself, every `vmrun exec` that
// closed its connection made the next one wait out that sleep (measured:
// a guest-sync took 100 ms instead of 1 ms after the previous session
// ended). Here the host side never ends while the VM runs.
//
// Answers that arrive while no client is connected (a session interrupted
// before its answer) are dropped; a new session's guest-sync-delimited
// skips whatever reaches it from an earlier one, as before. That is enough
// for a late answer too (a question whose asker gave up, then the agent
// answered): qemu-ga handles one request at a time and writes each answer
// before it reads the next request, so the late answer always comes before
// the answer to the next session's sync, never after it; the proxy keeps
// that order (TestLateAnswerBeforeNextSync). No resync or id check here.
type agentProxy struct {
	ln   *net.UnixListener
	qemu net.Conn

	mu     sync.Mutex
	client net.Conn // the client being served; nil: answers are dropped
	closed bool
	done   sync.WaitGroup

	serving sync.Mutex // held while a client (or Session) is served
	ended   func()     // called after each qga.sock client's session; may be nil
}

// newAgentProxy makes the socketpair and returns the proxy and QEMU's end
// (to pass as the agent chardev's fd). Serve starts the proxy.
func newAgentProxy(ln *net.UnixListener) (*agentProxy, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("guest agent socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "qga-vmrun")
	qemu := os.NewFile(uintptr(fds[1]), "qga-qemu")
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		qemu.Close()
		return nil, nil, fmt.Errorf("guest agent socketpair: %w", err)
	}
	return &agentProxy{ln: ln, qemu: conn}, qemu, nil
}

// Serve starts forwarding; Close stops it.
func (p *agentProxy) Serve() {
	p.done.Add(2)
	go func() { defer p.done.Done(); p.answers() }()
	go func() { defer p.done.Done(); p.accept() }()
}

// answers copies what the agent sends to the current client.
func (p *agentProxy) answers() {
	buf := make([]byte, 64<<10)
	for {
		n, err := p.qemu.Read(buf)
		if n > 0 {
			// Outside the lock: a client that does not read must not
			// hold up Close or the next session.
			if c := p.current(); c != nil {
				if _, werr := c.Write(buf[:n]); werr != nil {
					c.Close() // gone: its requests' copier ends the session
				}
			}
		}
		if err != nil {
			// QEMU is gone (or Close): end the current session.
			if c := p.current(); c != nil {
				c.Close()
			}
			return
		}
	}
}

// accept serves qga.sock's clients one after the other, copying each
// one's requests to the agent until it disconnects.
func (p *agentProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // Close
		}
		if !p.serve(c) {
			return
		}
		if p.ended != nil {
			p.ended()
		}
	}
}

// serve serves one client, the only one until it disconnects, or a write
// to QEMU's end fails (QEMU is gone: later clients see their connection
// end). It returns false, closing c, when the proxy is closed.
func (p *agentProxy) serve(c net.Conn) bool {
	p.serving.Lock()
	defer p.serving.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return false
	}
	p.client = c
	p.mu.Unlock()
	_, _ = io.Copy(p.qemu, c)
	p.mu.Lock()
	p.client = nil
	p.mu.Unlock()
	c.Close()
	return true
}

// Session is the supervisor's own session with the agent, served like a
// qga.sock client (in turn with them): the connection it returns ends
// the session when closed.
func (p *agentProxy) Session() (net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("guest agent session: %w", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "qga-session")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				conns[0].Close()
			} else {
				unix.Close(fds[1])
			}
			return nil, fmt.Errorf("guest agent session: %w", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		conns[0].Close()
		conns[1].Close()
		return nil, net.ErrClosed
	}
	p.done.Add(1)
	go func() { defer p.done.Done(); p.serve(conns[1]) }()
	return conns[0], nil
}

// current returns the client being served, or nil.
func (p *agentProxy) current() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client
}

// Close stops serving and drops the connection to QEMU.
func (p *agentProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	c := p.client
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
	p.ln.Close()
	p.qemu.Close()
	p.done.Wait()
	return nil
}
