package dnsforward

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

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
	ups := parseResolvConf(conf)
	if len(ups) == 0 {
		return nil, fmt.Errorf("dns forwarder: %s: %w", f.cfg.ResolvConf, ErrNoUpstream)
	}
	f.upstream, f.conf = ups, conf
	return ups, nil
}

// parseResolvConf returns the host:53 of each name server a resolv.conf
// lists (Nameservers), in its order.
func parseResolvConf(conf []byte) []string {
	var ups []string
	for _, a := range Nameservers(string(conf)) {
		ups = append(ups, net.JoinHostPort(a.String(), "53"))
	}
	return ups
}

// Nameservers returns the addresses of a resolv.conf's "nameserver"
// lines, in its order: IPv4 or IPv6 (with its %zone, if any). As in
// glibc, a "#" or ";" ends the address and a line whose address does not
// parse is skipped; unlike glibc (which takes the first three) all are
// kept. Comment lines and other keywords are ignored.
func Nameservers(conf string) []netip.Addr {
	var addrs []netip.Addr
	for line := range strings.Lines(conf) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		addr := f[1]
		if i := strings.IndexAny(addr, "#;"); i >= 0 {
			addr = addr[:i]
		}
		if a, err := netip.ParseAddr(addr); err == nil {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// forward sends the query q with this ID over network to the upstreams
// in their order, the next one once the last has failed or upstreamStagger
// has passed without its answer, and returns the first answer, all within
// upstreamTimeout. If none answers, it returns the errors of those asked
// on one line ("UPSTREAM: ERR; UPSTREAM: ERR").
func (f *Forwarder) forward(network string, q []byte, id uint16) ([]byte, error) {
	ups, err := f.upstreams()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(f.ctx, upstreamTimeout)
	defer cancel() // ends the exchanges still under way
	type reply struct {
		i    int
		resp []byte
		err  error
	}
	replies := make(chan reply, len(ups))
	errs := make([]error, len(ups))
	asked, pending := 0, 0
	stagger := time.NewTimer(upstreamStagger)
	defer stagger.Stop()
	ask := func() {
		i := asked
		asked++
		pending++
		go func() {
			resp, err := f.exchange(ctx, network, ups[i], q, id)
			replies <- reply{i, resp, err}
		}()
		stagger.Reset(upstreamStagger)
	}
	ask()
	for pending > 0 {
		select {
		case r := <-replies:
			pending--
			if r.err == nil {
				return r.resp, nil
			}
			errs[r.i] = fmt.Errorf("%s: %w", ups[r.i], r.err)
			if asked < len(ups) && ctx.Err() == nil {
				ask()
			}
		case <-stagger.C:
			if asked < len(ups) {
				ask()
			}
		}
	}
	for _, e := range errs {
		switch {
		case e == nil:
		case err == nil:
			err = e
		default:
			err = fmt.Errorf("%w; %w", err, e)
		}
	}
	return nil, err
}

// exchange sends q to upstream u over a new socket made in the
// forwarder's namespace and returns its answer, before ctx's deadline;
// ctx's end (forward's, or Close) ends it early.
func (f *Forwarder) exchange(ctx context.Context, network, u string, q []byte, id uint16) ([]byte, error) {
	deadline, _ := ctx.Deadline()
	var conn net.Conn
	err := f.inNetns(func() error {
		var err error
		conn, err = (&net.Dialer{Deadline: deadline}).DialContext(ctx, network, u)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if network == "tcp" {
		return exchangeTCP(conn, q, id)
	}
	return exchangeUDP(conn, q, id)
}

// exchangeUDP sends q as one datagram and returns the first datagram
// answering it; others (late answers to someone else's query, forgeries)
// are skipped until the deadline.
func exchangeUDP(conn net.Conn, q []byte, id uint16) ([]byte, error) {
	if _, err := conn.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, maxUDP)
	for skipped := 0; ; skipped++ {
		n, err := conn.Read(buf)
		if err != nil {
			if skipped > 0 {
				err = fmt.Errorf("%w (after %d datagrams not answering ID %d)", err, skipped, id)
			}
			return nil, err
		}
		if isAnswer(buf[:n], id) {
			return bytes.Clone(buf[:n]), nil
		}
	}
}

// exchangeTCP sends q framed and reads the one framed answer, which must
// answer q's ID.
func exchangeTCP(conn net.Conn, q []byte, id uint16) ([]byte, error) {
	if err := writeMsg(conn, q); err != nil {
		return nil, err
	}
	resp, err := readMsg(conn)
	if err != nil {
		return nil, err
	}
	if !isAnswer(resp, id) {
		return nil, fmt.Errorf("not an answer to ID %d", id)
	}
	return resp, nil
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
