package dnsforward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vmrun/vmrun/internal/testutil"
)

// fwd is a forwarder on 127.0.0.1:53 in a namespace of its own, whose
// upstreams are the nameserver lines of its resolv.conf; logs receives
// what it logs.
type fwd struct {
	*Forwarder
	ns   *testutil.Netns
	addr string
	logs chan string
}

func newFwd(t *testing.T, tag string, nameservers ...string) *fwd {
	t.Helper()
	ns := testutil.NewNetns(t, tag)
	ns.MustRun(t, "ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
	ns.MustRun(t, "ip", "addr", "add", "127.0.0.4/8", "dev", "lo")
	var conf strings.Builder
	for _, s := range nameservers {
		fmt.Fprintf(&conf, "nameserver %s\n", s)
	}
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &fwd{ns: ns, addr: "127.0.0.1:53", logs: make(chan string, 100)}
	w.Forwarder = start(t, ns, Config{Addr: w.addr, ResolvConf: rc, Logf: func(format string, args ...any) {
		t.Logf(format, args...)
		select {
		case w.logs <- fmt.Sprintf(format, args...):
		default:
		}
	}})
	return w
}

// conn dials the forwarder over network from inside its namespace.
func (w *fwd) conn(t *testing.T, network string) *dns.Conn {
	t.Helper()
	var c net.Conn
	if err := w.ns.Do(func() error {
		var err error
		c, err = net.Dial(network, w.addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &dns.Conn{Conn: c}
}

func question(id uint16, name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	return m
}

// aAnswer is the first A record of m, or m's rcode.
func aAnswer(m *dns.Msg) string {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return dns.RcodeToString[m.Rcode]
}

// TestServfail: when no upstream answers, the guest gets a SERVFAIL for
// its query (its ID, opcode, RD and CD, its question) over UDP and TCP,
// and one line is logged.
func TestServfail(t *testing.T) {
	w := newFwd(t, "dnssf", "127.0.0.9", "127.0.0.10") // nothing listens
	for i, network := range []string{"udp", "tcp"} {
		c := w.conn(t, network)
		q := question(uint16(0x1234+i), "vmrun.test.")
		q.CheckingDisabled = true
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if r.Id != q.Id || !r.Response || r.Opcode != dns.OpcodeQuery || r.Rcode != dns.RcodeServerFailure ||
			!r.RecursionDesired || !r.CheckingDisabled || r.RecursionAvailable || r.Authoritative ||
			len(r.Question) != 1 || r.Question[0] != q.Question[0] || len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 {
			t.Errorf("%s: SERVFAIL for\n%v\nis\n%v", network, q, r)
		}
		line := <-w.logs
		want := fmt.Sprintf("dns forwarder: vmrun.test. (%s): 127.0.0.9:53: ", network)
		if !strings.HasPrefix(line, want) || !strings.Contains(line, "; 127.0.0.10:53: ") || strings.Contains(line, "\n") {
			t.Errorf("logged %q, want one line %q… naming both upstreams", line, want)
		}
	}
}

// TestTCPSeveralQueries: queries on one TCP connection, sent one after
// another or all at once, are all answered in turn.
func TestTCPSeveralQueries(t *testing.T) {
	w := newFwd(t, "dnsmq", "127.0.0.2")
	upstream(t, w.ns, "127.0.0.2:53", "10.9.8.7")
	c := w.conn(t, "tcp")
	for i := range 3 { // one after another
		q := question(uint16(100+i), fmt.Sprintf("q%d.vmrun.test.", i))
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadMsg()
		if err != nil || r.Id != q.Id || r.Question[0].Name != q.Question[0].Name || aAnswer(r) != "10.9.8.7" {
			t.Fatalf("query %d: %v, %v", i, r, err)
		}
	}
	for i := range 3 { // pipelined
		if err := c.WriteMsg(question(uint16(200+i), fmt.Sprintf("p%d.vmrun.test.", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		r, err := c.ReadMsg()
		if err != nil || r.Id != uint16(200+i) || aAnswer(r) != "10.9.8.7" {
			t.Fatalf("pipelined query %d: %v, %v", i, r, err)
		}
	}
}

// wrongIDUpstream runs a name server on addr (inside ns) that answers
// every query first with the wrong ID (and the address 6.6.6.6) and, over
// UDP only, then with the right one and ip.
func wrongIDUpstream(t *testing.T, ns *testutil.Netns, addr, ip string) {
	t.Helper()
	pc, ln := listenIn(t, ns, addr)
	t.Cleanup(func() { pc.Close(); ln.Close() })
	reply := func(q *dns.Msg, id uint16, ip string) []byte {
		m := new(dns.Msg).SetReply(q)
		m.Id = id
		rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + ip)
		m.Answer = append(m.Answer, rr)
		b, _ := m.Pack()
		return b
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			pc.WriteTo(reply(q, q.Id+1, "6.6.6.6"), from)
			pc.WriteTo(reply(q, q.Id, ip), from)
		}
	}()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := &dns.Conn{Conn: nc}
			if q, err := c.ReadMsg(); err == nil {
				c.Write(reply(q, q.Id+1, "6.6.6.6"))
			}
			nc.Close()
		}
	}()
}

// TestWrongID: an upstream's answer with another ID than the query's is
// not passed on: over UDP the right one that follows is, over TCP the
// next upstream is asked.
func TestWrongID(t *testing.T) {
	w := newFwd(t, "dnsid", "127.0.0.2", "127.0.0.4")
	wrongIDUpstream(t, w.ns, "127.0.0.2:53", "10.9.8.7")
	upstream(t, w.ns, "127.0.0.4:53", "10.1.1.1")
	for network, want := range map[string]string{"udp": "10.9.8.7", "tcp": "10.1.1.1"} {
		if a, err := query(t, w.ns, network, w.addr, "vmrun.test"); err != nil || a != want {
			t.Errorf("%s: %q, %v; want %s", network, a, err, want)
		}
	}
}

// TestRefused: what miekg/dns's server refused is refused still, without
// asking the upstream (nothing listens there: a forwarded query would get
// SERVFAIL): a response or a headerless message gets nothing back,
// another opcode NOTIMP, a query with two questions FORMERR. Over one TCP
// connection the reply read after each is the next query's.
func TestRefused(t *testing.T) {
	w := newFwd(t, "dnsrf", "127.0.0.9")
	c := w.conn(t, "tcp")
	resp := question(1, "vmrun.test.")
	resp.Response = true
	update := question(2, "vmrun.test.")
	update.Opcode = dns.OpcodeUpdate
	two := question(3, "vmrun.test.")
	two.Question = append(two.Question, two.Question[0])
	for _, tc := range []struct {
		name  string
		msg   func() ([]byte, error)
		rcode int // -1: no reply
	}{
		{"response", resp.Pack, -1},
		{"short", func() ([]byte, error) { return []byte{1, 2, 3}, nil }, -1},
		{"update", update.Pack, dns.RcodeNotImplemented},
		{"two questions", two.Pack, dns.RcodeFormatError},
	} {
		b, err := tc.msg()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if tc.rcode >= 0 {
			r, err := c.ReadMsg()
			if err != nil || r.Id != binaryID(b) || !r.Response || r.Rcode != tc.rcode {
				t.Errorf("%s: %v, %v", tc.name, r, err)
			}
		}
		q := question(99, "next.vmrun.test.")
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		if r, err := c.ReadMsg(); err != nil || r.Id != q.Id || r.Rcode != dns.RcodeServerFailure {
			t.Errorf("after %s: %v, %v", tc.name, r, err)
		}
	}
}

func binaryID(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// TestTCPConnEnds: a guest's TCP connection that sends nothing is closed
// after tcpFirstRead; Close closes an idle one at once (before tcpIdle).
func TestTCPConnEnds(t *testing.T) {
	w := newFwd(t, "dnstc", "127.0.0.2")
	upstream(t, w.ns, "127.0.0.2:53", "10.9.8.7")
	silent := w.conn(t, "tcp")
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("silent connection: %v, want EOF", err)
	}
	c := w.conn(t, "tcp")
	if err := c.WriteMsg(question(7, "vmrun.test.")); err != nil {
		t.Fatal(err)
	}
	if r, err := c.ReadMsg(); err != nil || aAnswer(r) != "10.9.8.7" {
		t.Fatalf("%v, %v", r, err)
	}
	began := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection after Close: %v, want EOF", err)
	}
	if d := time.Since(began); d >= tcpIdle {
		t.Errorf("Close took %v", d)
	}
}

// TestCloseEndsExchange: Close does not wait for an upstream that does
// not answer, and logs nothing about the query it cut.
func TestCloseEndsExchange(t *testing.T) {
	w := newFwd(t, "dnsce", "127.0.0.2")
	var pc net.PacketConn
	if err := w.ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", "127.0.0.2:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if err := w.conn(t, "udp").WriteMsg(question(5, "vmrun.test.")); err != nil {
		t.Fatal(err)
	}
	if err := pc.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pc.ReadFrom(make([]byte, 512)); err != nil { // the query reached the upstream
		t.Fatal(err)
	}
	began := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d >= upstreamTimeout {
		t.Errorf("Close took %v", d)
	}
	select {
	case line := <-w.logs:
		t.Errorf("logged %q", line)
	default:
	}
}

// TestAsksNextUpstreamMeanwhile: while the first upstream keeps a query
// unanswered, the forwarder asks the next one too, and takes the answer
// that comes first. Here the second never answers and the first answers
// only once the second has the query: asking one upstream after the other
// (the first's exchange ending before the second is asked) gets no answer.
func TestAsksNextUpstreamMeanwhile(t *testing.T) {
	w := newFwd(t, "dnsst", "127.0.0.2", "127.0.0.4")
	var slow, silent net.PacketConn
	if err := w.ns.Do(func() error {
		var err error
		if slow, err = net.ListenPacket("udp4", "127.0.0.2:53"); err != nil {
			return err
		}
		silent, err = net.ListenPacket("udp4", "127.0.0.4:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close(); silent.Close() })
	secondAsked := make(chan struct{})
	go func() {
		if _, _, err := silent.ReadFrom(make([]byte, 512)); err == nil {
			close(secondAsked)
		}
	}()
	go func() {
		buf := make([]byte, 512)
		n, from, err := slow.ReadFrom(buf)
		if err != nil {
			return
		}
		<-secondAsked
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil {
			return
		}
		m := new(dns.Msg)
		m.SetReply(q)
		rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 10.9.8.7")
		m.Answer = append(m.Answer, rr)
		b, _ := m.Pack()
		_, _ = slow.WriteTo(b, from)
	}()
	c := w.conn(t, "udp")
	if err := c.WriteMsg(question(7, "vmrun.test.")); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if a := aAnswer(r); a != "10.9.8.7" {
		t.Fatalf("answer %s, want the first upstream's 10.9.8.7 (given once the second was asked)", a)
	}
}
