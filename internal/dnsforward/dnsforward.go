// Package dnsforward answers the DNS queries of NAT guests by asking the
// host's own resolvers, as listed in a resolv.conf.
//
// It runs inside vmrun, on the host, so a loopback stub resolver such as
// systemd-resolved's 127.0.0.53 works as an upstream. Several vmrun
// processes serve the guests of one NAT bridge: each binds the bridge's
// address with SO_REUSEPORT (the kernel spreads queries among them), so
// when one process exits the others keep answering.
//
// Queries and answers pass through as they are: only a query's header is
// read (and its question when a SERVFAIL must echo it), with
// golang.org/x/net/dns/dnsmessage, which keeps crypto/tls and friends out
// of vmrun's binary and start.
package dnsforward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// upstreamTimeout bounds the forwarding of one query, every upstream
// asked included: below glibc's 5 s, so that a guest gets a SERVFAIL
// rather than giving up on its own.
const upstreamTimeout = 3 * time.Second

// upstreamStagger is how long the forwarder waits on an upstream server
// before it asks the next one too (the first answer wins, the others are
// dropped): a first server that no longer answers (the network the host
// was on when it was listed) costs a guest's query this, not
// upstreamTimeout.
const upstreamStagger = 500 * time.Millisecond

// A guest's TCP connection must send its first query within tcpFirstRead
// and each further one within tcpIdle of the last answer; at most
// tcpMaxQueries are answered on one connection (miekg/dns's defaults).
const (
	tcpFirstRead  = 2 * time.Second
	tcpIdle       = 8 * time.Second
	tcpWrite      = 2 * time.Second
	tcpMaxQueries = 128
)

// maxUDP is the read buffer for a datagram: any that IP can carry.
const maxUDP = 64 << 10

// Config says where to listen and whom to ask.
type Config struct {
	// Addr is the address to serve on, UDP and TCP (e.g. "10.201.0.1:53").
	Addr string
	// ResolvConf is the file listing the upstream name servers. It is read
	// again whenever it changes (a laptop moving between networks).
	ResolvConf string
	// Logf, when set, receives one line per failed query.
	Logf func(format string, args ...any)
}

// Forwarder is a running DNS forwarder. Close stops it.
type Forwarder struct {
	cfg    Config
	ns     netns.NsHandle // the network namespace Start ran in
	udp    net.PacketConn
	tcp    net.Listener
	ctx    context.Context // canceled by Close: ends upstream exchanges
	cancel context.CancelFunc
	wg     sync.WaitGroup // the serving loops and every query's goroutine
	once   sync.Once

	closing  atomic.Bool   // Close has begun: a server's end is no failure
	dead     chan struct{} // closed when a server stopped serving on its own
	deadOnce sync.Once
	deadErr  error

	connMu sync.Mutex
	conns  map[net.Conn]struct{} // the guests' open TCP connections

	mu       sync.Mutex
	conf     []byte // the resolv.conf's content upstream was read from
	upstream []string
}

// ErrNoUpstream means the resolv.conf lists no name server.
var ErrNoUpstream = errors.New("no upstream name server")

// Start binds cfg.Addr (UDP and TCP, SO_REUSEPORT) and serves until Close.
// It fails when the address cannot be bound or the resolv.conf cannot be
// read or lists no name server; then nothing is left open. Both sockets
// are bound when it returns, so the kernel queues a query sent after that
// until the serving goroutine reads it.
func Start(cfg Config) (*Forwarder, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	f := &Forwarder{cfg: cfg, dead: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	if _, err := f.upstreams(); err != nil {
		return nil, err
	}
	// Upstream sockets are made in Start's namespace, whichever thread
	// serves a query (they are the same in vmrun, whose threads all share
	// one namespace; not in tests that switch a thread).
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("dns forwarder: %w", err)
	}
	f.ns = ns
	if err := f.listen(); err != nil {
		ns.Close()
		return nil, fmt.Errorf("dns forwarder: %w", err)
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.run(f.serveUDP)
	f.run(f.serveTCP)
	return f, nil
}

// listen binds the UDP and the TCP socket, or neither.
func (f *Forwarder) listen() error {
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(context.Background(), "udp4", f.cfg.Addr)
	if err != nil {
		return err
	}
	ln, err := lc.Listen(context.Background(), "tcp4", f.cfg.Addr)
	if err != nil {
		pc.Close()
		return err
	}
	f.udp, f.tcp = pc, ln
	return nil
}

// reusePort sets SO_REUSEPORT (and SO_REUSEADDR) before bind.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}
	})
	return errors.Join(err, serr)
}

// run runs a serving loop; its end before Close is the forwarder's death.
func (f *Forwarder) run(serve func() error) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		err := serve()
		if !f.closing.Load() {
			f.died(err)
		}
	}()
}

// died records that a server stopped serving on its own, with err.
func (f *Forwarder) died(err error) {
	if err == nil {
		err = errors.New("stopped serving")
	}
	f.deadOnce.Do(func() {
		f.deadErr = fmt.Errorf("dns forwarder on %s: %w", f.cfg.Addr, err)
		close(f.dead)
	})
}

// Done is closed when the forwarder stopped serving on its own (a socket
// failed): Err says why. Close does not close it.
func (f *Forwarder) Done() <-chan struct{} { return f.dead }

// Err is why the forwarder stopped serving, once Done is closed; nil
// before.
func (f *Forwarder) Err() error {
	select {
	case <-f.dead:
		return f.deadErr
	default:
		return nil
	}
}

// Close stops serving: it closes both sockets and the guests' TCP
// connections, ends the upstream exchanges under way and waits for every
// goroutine of the forwarder to end. A socket already closed under the
// forwarder is no error.
func (f *Forwarder) Close() error {
	var err error
	f.once.Do(func() {
		f.closing.Store(true)
		f.cancel()
		err = errors.Join(ignoreClosed(f.udp.Close()), ignoreClosed(f.tcp.Close()))
		f.connMu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.connMu.Unlock()
		f.wg.Wait()
		f.ns.Close()
	})
	return err
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// temporary says whether a failed read or accept is worth retrying
// (interrupted, out of file descriptors, buffers or memory; the net
// package itself retries an accept whose connection was aborted).
func temporary(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno.Temporary() || errno == syscall.ENOBUFS || errno == syscall.ENOMEM)
}

// serveUDP reads datagrams until the socket fails; each query is answered
// on its own goroutine, so a slow upstream holds up no other query.
func (f *Forwarder) serveUDP() error {
	buf := make([]byte, maxUDP)
	for {
		n, addr, err := f.udp.ReadFrom(buf)
		if err != nil {
			if temporary(err) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		q := bytes.Clone(buf[:n])
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.replyUDP(q, addr)
		}()
	}
}

func (f *Forwarder) replyUDP(q []byte, addr net.Addr) {
	resp := f.answer("udp", addr, q)
	if resp == nil {
		return
	}
	if _, err := f.udp.WriteTo(resp, addr); err != nil && !f.closing.Load() {
		f.cfg.Logf("dns forwarder: reply to %s: %v", addr, err)
	}
}

// serveTCP accepts connections until the listener fails; each is served
// on its own goroutine.
func (f *Forwarder) serveTCP() error {
	for {
		c, err := f.tcp.Accept()
		if err != nil {
			if temporary(err) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		if !f.track(c) {
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.serveConn(c)
		}()
	}
}

// track registers a guest's connection for Close to close; once Close
// has begun it closes the connection instead and returns false.
func (f *Forwarder) track(c net.Conn) bool {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	if f.closing.Load() {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.connMu.Lock()
	delete(f.conns, c)
	f.connMu.Unlock()
	c.Close()
}

// serveConn answers the queries of one guest's TCP connection, one after
// another, until it is closed, stays silent too long or used up its
// queries.
func (f *Forwarder) serveConn(c net.Conn) {
	timeout := tcpFirstRead
	for range tcpMaxQueries {
		if c.SetReadDeadline(time.Now().Add(timeout)) != nil {
			return
		}
		q, err := readMsg(c)
		if err != nil {
			return // closed, silent or cut off: nobody to tell
		}
		if !f.replyTCP(c, q) {
			return
		}
		timeout = tcpIdle
	}
}

// replyTCP answers the query q on c; false if the answer cannot be sent.
func (f *Forwarder) replyTCP(c net.Conn, q []byte) bool {
	resp := f.answer("tcp", c.RemoteAddr(), q)
	if resp == nil {
		return true
	}
	err := c.SetWriteDeadline(time.Now().Add(tcpWrite))
	if err == nil {
		err = writeMsg(c, resp)
	}
	if err != nil && !f.closing.Load() {
		f.cfg.Logf("dns forwarder: reply to %s: %v", c.RemoteAddr(), err)
	}
	return err == nil
}

// Addr returns host:53 for an IP address.
func Addr(ip net.IP) string { return net.JoinHostPort(ip.String(), strconv.Itoa(53)) }
