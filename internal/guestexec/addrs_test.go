package guestexec

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// fakeQEMU answers the agent protocol on QEMU's end of the proxy's
// socketpair: guest-sync-delimited, and guest-network-get-interfaces
// with the interfaces set last (qemu-ga's fields).
type fakeQEMU struct {
	mu     sync.Mutex
	ifaces string
	asked  chan struct{} // one per guest-network-get-interfaces question
}

func (f *fakeQEMU) set(ifaces string) { f.mu.Lock(); f.ifaces = ifaces; f.mu.Unlock() }

func (f *fakeQEMU) serve(conn net.Conn) {
	r := bufio.NewReader(conn)
	for {
		// One JSON object: from its '{' to the matching '}' (the
		// requests hold no braces in strings); 0xFF sentinels between.
		var obj []byte
		depth := 0
		for {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			if b == '{' {
				depth++
			}
			if depth > 0 {
				obj = append(obj, b)
			}
			if b == '}' {
				if depth--; depth == 0 {
					break
				}
			}
		}
		var msg struct {
			Execute   string `json:"execute"`
			Arguments struct {
				ID int64 `json:"id"`
			} `json:"arguments"`
		}
		if err := json.Unmarshal(obj, &msg); err != nil {
			return
		}
		switch msg.Execute {
		case "guest-sync-delimited":
			fmt.Fprintf(conn, "\xff{\"return\": %d}\n", msg.Arguments.ID)
		case "guest-network-get-interfaces":
			f.asked <- struct{}{} // before the answer: the test sees it first
			f.mu.Lock()
			fmt.Fprintf(conn, "{\"return\": %s}\n", f.ifaces)
			f.mu.Unlock()
		default:
			fmt.Fprintf(conn, "{\"return\": {}}\n")
		}
	}
}

// eth0 is an answer with one interface holding addrs (and lo's).
func eth0(addrs ...string) string {
	s := `[{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]}, {"name": "eth0", "ip-addresses": [`
	for i, a := range addrs {
		if i > 0 {
			s += ", "
		}
		typ, bits := "ipv4", 24
		if netip.MustParseAddr(a).Is6() {
			typ, bits = "ipv6", 64
		}
		s += fmt.Sprintf(`{"ip-address-type": %q, "ip-address": %q, "prefix": %d}`, typ, a, bits)
	}
	return s + "]}]"
}

// TestWatchAddresses: the supervisor's questions go through the proxy's
// one connection to QEMU, in turn with qga.sock's clients; the first
// answer is reported, and the end of a client's session (a `vmrun exec`
// that may have changed the guest's addresses) brings the next question
// and the new addresses.
func TestWatchAddresses(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	p, qemuFile, err := newAgentProxy(ln)
	if err != nil {
		t.Fatal(err)
	}
	ch := &Channel{proxy: p, closeAll: p.Close, kick: make(chan struct{}, 1)}
	p.ended = ch.Kick
	p.Serve()
	defer ch.Close()
	qemu, err := net.FileConn(qemuFile)
	qemuFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer qemu.Close()
	f := &fakeQEMU{asked: make(chan struct{}, 100)}
	f.set(eth0("192.168.1.57", "fe80::1"))
	go f.serve(qemu)

	reports := make(chan []netip.Addr, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ch.WatchAddresses(ctx, func(a []netip.Addr) { reports <- a }) }()
	next := func(want ...string) {
		t.Helper()
		select {
		case got := <-reports:
			var w []netip.Addr
			for _, a := range want {
				w = append(w, netip.MustParseAddr(a))
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("reported %v, want %v", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no report of %v within 10 s", want)
		}
	}
	next("192.168.1.57")

	// A client session (as `vmrun exec` would) changes the answer.
	f.set(eth0("192.168.1.57", "2001:db8::57"))
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":5}}")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "\xff{\"return\": 5}\n" {
		t.Fatalf("the client's sync: %q, %v", line, err)
	}
	c.Close()
	next("192.168.1.57", "2001:db8::57")

	// A kick with an unchanged answer: a question, no report.
	for len(f.asked) > 0 {
		<-f.asked
	}
	ch.Kick()
	select {
	case <-f.asked:
	case <-time.After(10 * time.Second):
		t.Fatal("no question within 10 s of a kick")
	}
	cancel()
	<-done
	select {
	case r := <-reports:
		t.Fatalf("reported %v for an unchanged answer", r)
	default:
	}
}
