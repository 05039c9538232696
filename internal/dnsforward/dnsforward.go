// Package dnsforward answers the DNS queries of NAT guests by asking the
// host's own resolvers, as listed in a resolv.conf.
//
// It runs inside vmrun, on the host, so a loopback stub resolver such as
// systemd-resolved's 127.0.0.53 works as an upstream. Several vmrun
// processes serve the guests of one NAT bridge: each binds the bridge's
// address with SO_REUSEPORT (the kernel spreads queries among them), so
// when one process exits the others keep answering.
package dnsforward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// upstreamTimeout bounds one query to one upstream server.
const upstreamTimeout = 3 * time.Second

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
	cfg  Config
	ns   netns.NsHandle // the network namespace Start ran in
	udp  *dns.Server
	tcp  *dns.Server
	wg   sync.WaitGroup
	once sync.Once

	closing  atomic.Bool   // Close has begun: a server's end is no failure
	dead     chan struct{} // closed when a server stopped serving on its own
	deadOnce sync.Once
	deadErr  error

	mu       sync.Mutex
	conf     []byte // the resolv.conf's content upstream was read from
	upstream []string
}

// ErrNoUpstream means the resolv.conf lists no name server.
var ErrNoUpstream = errors.New("no upstream name server")

// Start binds cfg.Addr (UDP and TCP, SO_REUSEPORT) and serves until Close.
// It fails when the address cannot be bound or the resolv.conf cannot be
// read.
func Start(cfg Config) (*Forwarder, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	f := &Forwarder{cfg: cfg, dead: make(chan struct{})}
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
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(context.Background(), "udp4", cfg.Addr)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("dns forwarder: %w", err)
	}
	ln, err := lc.Listen(context.Background(), "tcp4", cfg.Addr)
	if err != nil {
		pc.Close()
		ns.Close()
		return nil, fmt.Errorf("dns forwarder: %w", err)
	}
	f.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(f.serve("udp"))}
	f.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(f.serve("tcp"))}
	for _, s := range []*dns.Server{f.udp, f.tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			err := s.ActivateAndServe()
			if !f.closing.Load() {
				f.died(err)
			}
		}()
		<-started
	}
	return f, nil
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

// Close stops serving and waits for the servers to end.
func (f *Forwarder) Close() error {
	var err error
	f.closing.Store(true)
	f.once.Do(func() {
		err = errors.Join(f.udp.Shutdown(), f.tcp.Shutdown())
		f.wg.Wait()
		f.ns.Close()
	})
	return err
}

// upstreams returns the name servers of the resolv.conf, parsing it again
// when its content changed. The content, not the size and modification
// time, decides: a rewrite of the same size within one timestamp tick
// changes neither. The file is a few hundred bytes and read once per query.
func (f *Forwarder) upstreams() ([]string, error) {
	conf, err := os.ReadFile(f.cfg.ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("dns forwarder: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.upstream != nil && bytes.Equal(conf, f.conf) {
		return f.upstream, nil
	}
	cc, err := dns.ClientConfigFromReader(bytes.NewReader(conf))
	if err != nil {
		return nil, fmt.Errorf("dns forwarder: %s: %w", f.cfg.ResolvConf, err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("dns forwarder: %s: %w", f.cfg.ResolvConf, ErrNoUpstream)
	}
	var ups []string
	for _, s := range cc.Servers {
		ups = append(ups, net.JoinHostPort(s, cc.Port))
	}
	f.upstream, f.conf = ups, conf
	return ups, nil
}

// serve answers one query over network ("udp" or "tcp") by asking the
// upstreams in order; the first answer wins. A truncated UDP answer is
// passed on as is: the guest retries over TCP, which is forwarded over TCP.
func (f *Forwarder) serve(network string) func(dns.ResponseWriter, *dns.Msg) {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		resp := f.forward(network, req)
		if err := w.WriteMsg(resp); err != nil {
			f.cfg.Logf("dns forwarder: reply to %s: %v", w.RemoteAddr(), err)
		}
	}
}

func (f *Forwarder) forward(network string, req *dns.Msg) *dns.Msg {
	ups, err := f.upstreams()
	if err == nil {
		c := &dns.Client{Net: network, Timeout: upstreamTimeout}
		var errs []error
		for _, u := range ups {
			resp, xerr := f.exchange(c, network, req, u)
			if xerr == nil {
				return resp
			}
			errs = append(errs, fmt.Errorf("%s: %w", u, xerr))
		}
		err = errors.Join(errs...)
	}
	name := ""
	if len(req.Question) > 0 {
		name = req.Question[0].Name
	}
	f.cfg.Logf("dns forwarder: %s (%s): %v", name, network, err)
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	return m
}

// exchange sends req to upstream u over a socket made in the forwarder's
// namespace.
func (f *Forwarder) exchange(c *dns.Client, network string, req *dns.Msg, u string) (*dns.Msg, error) {
	var conn net.Conn
	err := f.inNetns(func() error {
		var err error
		conn, err = net.DialTimeout(network, u, upstreamTimeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, _, err := c.ExchangeWithConn(req, &dns.Conn{Conn: conn})
	return resp, err
}

// inNetns runs fn on a new OS thread in the forwarder's namespace; the
// thread ends with it, taking the namespace switch along.
func (f *Forwarder) inNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits
		if err := netns.Set(f.ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Addr returns host:53 for an IP address.
func Addr(ip net.IP) string { return net.JoinHostPort(ip.String(), strconv.Itoa(53)) }
