package dnsforward

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vmrun/vmrun/internal/testutil"
)

// upstream runs a DNS server on addr (inside ns) that answers every A
// query with ip.
func upstream(t *testing.T, ns *testutil.Netns, addr, ip string) {
	t.Helper()
	pc, ln := listenIn(t, ns, addr)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A " + ip)
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
}

// listenIn binds addr over UDP and TCP inside ns.
func listenIn(t *testing.T, ns *testutil.Netns, addr string) (net.PacketConn, net.Listener) {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", addr); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return pc, ln
}

// query asks the forwarder at addr (inside ns) for name's A record.
func query(t *testing.T, ns *testutil.Netns, network, addr, name string) (string, error) {
	t.Helper()
	var answer string
	err := ns.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(m, addr)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			answer = dns.RcodeToString[r.Rcode]
			return nil
		}
		answer = r.Answer[0].(*dns.A).A.String()
		return nil
	})
	return answer, err
}

func start(t *testing.T, ns *testutil.Netns, cfg Config) *Forwarder {
	t.Helper()
	var f *Forwarder
	if err := ns.Do(func() error {
		var err error
		f, err = Start(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestForwarder: queries over UDP and TCP are answered by the upstream of
// the resolv.conf; a changed resolv.conf is followed; with two forwarders
// on one address (two vmrun processes), closing one leaves the other
// answering; an unreachable upstream gives SERVFAIL.
func TestForwarder(t *testing.T) {
	ns := testutil.NewNetns(t, "dns")
	ns.MustRun(t, "ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
	upstream(t, ns, "127.0.0.1:53", "10.9.8.7")
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("# test\nnameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Addr: "127.0.0.3:53", ResolvConf: rc, Logf: t.Logf}
	ns.MustRun(t, "ip", "addr", "add", "127.0.0.3/8", "dev", "lo")
	first := start(t, ns, cfg)
	for _, network := range []string{"udp", "tcp"} {
		if a, err := query(t, ns, network, cfg.Addr, "vmrun.test"); err != nil || a != "10.9.8.7" {
			t.Errorf("%s: %q, %v", network, a, err)
		}
	}
	second := start(t, ns, cfg)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	for range 5 { // SO_REUSEPORT spreads queries; all must reach the second
		if a, err := query(t, ns, "udp", cfg.Addr, "vmrun.test"); err != nil || a != "10.9.8.7" {
			t.Fatalf("after the first forwarder closed: %q, %v", a, err)
		}
	}
	// A new upstream: the file is read again.
	upstream(t, ns, "127.0.0.2:53", "10.1.1.1")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err := query(t, ns, "udp", cfg.Addr, "vmrun.test"); err != nil || a != "10.1.1.1" {
		t.Errorf("after resolv.conf changed: %q, %v", a, err)
	}
	// A rewrite of the same size within the same timestamp tick (forced
	// here: the old modification time is put back) is followed too.
	fi, err := os.Stat(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(rc, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if fj, err := os.Stat(rc); err != nil || fj.Size() != fi.Size() || !fj.ModTime().Equal(fi.ModTime()) {
		t.Fatalf("the rewrite should keep size and time: %v, %v", fj, err)
	}
	if a, err := query(t, ns, "udp", cfg.Addr, "vmrun.test"); err != nil || a != "SERVFAIL" {
		t.Errorf("same-size rewrite to a dead upstream: %q, %v", a, err)
	}
	_ = second
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Config{Addr: "127.0.0.1:0", ResolvConf: "/nonexistent"}); err == nil {
		t.Error("missing resolv.conf accepted")
	}
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("search example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Config{Addr: "127.0.0.1:0", ResolvConf: rc}); err == nil {
		t.Error("resolv.conf without name servers accepted")
	}
}

// TestDoneWhenSocketFails: a forwarder whose socket is closed under it
// reports it on Done with the reason; Close does not.
func TestDoneWhenSocketFails(t *testing.T) {
	ns := testutil.NewNetns(t, "dnsd")
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := start(t, ns, Config{Addr: "127.0.0.1:53", ResolvConf: rc})
	g := start(t, ns, Config{Addr: "127.0.0.1:53", ResolvConf: rc})
	if err := f.udp.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done was not closed after the UDP socket failed")
	}
	if err := f.Err(); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Err = %v, want the closed socket", err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Done():
		t.Errorf("Close closed Done: %v", g.Err())
	default:
	}
}
