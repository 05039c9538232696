package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
)

// liveVM makes a runtime directory under root that this process holds
// locked, as a running vmrun does, with its initial state.
func liveVM(t *testing.T, root, name string) *rundir.Dir {
	t.Helper()
	d, _, err := rundir.Create(root, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	if err := d.Update(func(s *rundir.State) { *s = rundir.State{Name: name, PID: 1, Mode: "macvtap"} }); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestWaitAddress: `vmrun wait` returns once the state has an address
// (preferring IPv4), and not before.
func TestWaitAddress(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	d := liveVM(t, root, "w")
	type res struct {
		out, errOut string
		code        int
	}
	done := make(chan res, 1)
	go func() {
		out, errOut, code := vmrun(t, "wait", "w", "--for", "address", "--timeout", "1m")
		done <- res{out, errOut, code}
	}()
	// An unrelated change of the state does not end the wait.
	if err := d.Update(func(s *rundir.State) { s.QEMUPID = 2 }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("wait returned before the guest had an address: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	for _, a := range []string{"fd00::5", "10.0.0.5"} {
		if _, err := d.SetAddress(rundir.Address{Addr: a, Source: "arp", Learnt: time.Now()}, false); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.code != 0 || (r.out != "10.0.0.5\n" && r.out != "fd00::5\n") {
		t.Fatalf("wait: exit %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
	}
	// Now that the state has both, the IPv4 address is preferred.
	out, errOut, code := vmrun(t, "wait", "--for=address", "w")
	if code != 0 || out != "10.0.0.5\n" {
		t.Fatalf("wait: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestWaitFailures: exit codes 124 (time-out), 1 (no such VM, bad
// flags, ssh to a user-mode guest) and 2 (the VM is gone).
func TestWaitFailures(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	liveVM(t, root, "quiet")
	u := liveVM(t, root, "user")
	if _, err := u.SetAddress(rundir.Address{Addr: "10.0.2.15", Source: "user", Learnt: time.Now()}, false); err != nil {
		t.Fatal(err)
	}
	stale, _, err := rundir.Create(root, "stale")
	if err != nil {
		t.Fatal(err)
	}
	_ = stale.Update(func(s *rundir.State) { s.Name = "stale" })
	_ = stale.Close()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"wait", "quiet", "--timeout", "100ms"}, 124, "after --timeout 100ms"},
		{[]string{"wait", "nosuch"}, 1, `no VM named "nosuch" is running`},
		{[]string{"wait", "stale"}, 2, `VM "stale" is not running`},
		{[]string{"wait", "quiet", "--for", "ping"}, 1, `--for "ping"`},
		{[]string{"wait"}, 1, "takes one VM name"},
		{[]string{"wait", "user", "--for", "ssh", "--timeout", "5s"}, 1, "--net user"},
	} {
		_, errOut, code := vmrun(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
