package guestwait

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

func TestPreferIPv4(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "invalid IP"},
		{[]string{"fd00::5"}, "fd00::5"},
		{[]string{"fd00::5", "10.0.0.5"}, "10.0.0.5"},
		{[]string{"10.0.0.6", "10.0.0.5"}, "10.0.0.6"},
	} {
		var as []netip.Addr
		for _, s := range c.in {
			as = append(as, netip.MustParseAddr(s))
		}
		if got := PreferIPv4(as).String(); got != c.want {
			t.Errorf("PreferIPv4(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestWaitEnds: no such VM is a usage error; a VM without an address
// runs into the deadline; a VM whose vmrun is gone is a setup error.
func TestWaitEnds(t *testing.T) {
	root := t.TempDir()
	if _, err := New(root, "nosuch", false, time.Time{}); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("no such VM: %v (exit %d)", err, exitcode.Of(err))
	}
	d, _, err := rundir.Create(root, "quiet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	if err := d.Update(func(s *rundir.State) { *s = rundir.State{Name: "quiet", PID: 1} }); err != nil {
		t.Fatal(err)
	}
	w, err := New(root, "quiet", false, time.Now().Add(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if a, err := w.Wait(); !errors.Is(err, ErrTimeout) {
		t.Errorf("no address: %v, %v; want ErrTimeout", a, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if a, err := w.Wait(); err == nil || exitcode.Of(err) != exitcode.Setup {
		t.Errorf("VM gone: %v, %v (exit %d); want a setup error", a, err, exitcode.Of(err))
	}
}

// TestWaitSSHForward: on a user-mode guest with vmrun's SSH forward, a
// listener that accepts but never answers (slirp, passt before the guest
// does) is not an SSH server; one that answers the identification string
// with its own is, and WaitPort returns the forward's host end.
func TestWaitSSHForward(t *testing.T) {
	root := t.TempDir()
	d, _, err := rundir.Create(root, "fwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(speak bool) {
				defer c.Close()
				r := bufio.NewReader(c)
				line, _ := r.ReadString('\n')
				if speak && strings.HasPrefix(line, "SSH-2.0-") {
					_, _ = c.Write([]byte("SSH-2.0-test\r\n"))
					return
				}
				// Accepted, silent: hold the connection until the client gives up.
				_, _ = io.Copy(io.Discard, r)
			}(accepted.Add(1) > 1)
		}
	}()
	fwd := ln.Addr().String()
	if err := d.Update(func(s *rundir.State) {
		*s = rundir.State{Name: "fwd", PID: os.Getpid(), Mode: "user",
			Addresses: []rundir.Address{{Addr: "10.0.2.15", Source: netsetup.SourceUser}},
			SSH:       &rundir.SSH{User: "u", Forward: fwd}}
	}); err != nil {
		t.Fatal(err)
	}
	w, err := New(root, "fwd", true, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ap, err := w.WaitPort()
	if err != nil || ap.String() != fwd {
		t.Fatalf("WaitPort = %v, %v; want %s", ap, err, fwd)
	}
	if n := accepted.Load(); n < 2 {
		t.Errorf("WaitPort took the silent first connection (%d accepted) for an SSH server", n)
	}
}
