package guestssh

import (
	"flag"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// defaultTimeout stands for `vmrun ssh`'s default --timeout.
const defaultTimeout = 2 * time.Minute

// parse parses args as `vmrun ssh` does: its flag parser takes --timeout
// before the name, ParseArgs the rest.
func parse(t *testing.T, args ...string) (string, time.Duration, []string, error) {
	t.Helper()
	set := flag.NewFlagSet("ssh", flag.ContinueOnError)
	timeout := set.Duration("timeout", defaultTimeout, "")
	if err := set.Parse(args); err != nil {
		t.Fatal(err)
	}
	return ParseArgs(set.Args(), *timeout)
}

func TestSSHArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		name    string
		timeout time.Duration
		cmd     []string
		err     string
	}{
		{[]string{"web"}, "web", defaultTimeout, []string{}, ""},
		{[]string{"web", "--", "cat", "/etc/hostname"}, "web", defaultTimeout, []string{"cat", "/etc/hostname"}, ""},
		{[]string{"web", "--timeout", "5s", "--", "false"}, "web", 5 * time.Second, []string{"false"}, ""},
		{[]string{"--timeout=7s", "web", "uptime"}, "web", 7 * time.Second, []string{"uptime"}, ""},
		{[]string{"web", "--", "ls", "-l"}, "web", defaultTimeout, []string{"ls", "-l"}, ""},
		{[]string{}, "", 0, nil, "takes a VM name"},
		{[]string{"web", "-v"}, "", 0, nil, `unexpected "-v"`},
		{[]string{"web", "--timeout", "soon"}, "", 0, nil, "not a positive duration"},
		{[]string{"../x"}, "", 0, nil, ""},
	} {
		name, timeout, cmd, err := parse(t, tc.args...)
		if tc.name == "" {
			if err == nil || exitcode.Of(err) != exitcode.Usage || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want a usage error with %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || timeout != tc.timeout || !reflect.DeepEqual(cmd, tc.cmd) {
			t.Errorf("%q: got %q %v %q %v", tc.args, name, timeout, cmd, err)
		}
	}
}

func TestSSHArgv(t *testing.T) {
	st := &rundir.State{SSH: &rundir.SSH{User: "alice", Key: "/home/alice/.ssh/id_ed25519", Forward: "127.0.0.1:40022"}}
	got := Argv("/run/vmrun/web", "web", netip.MustParseAddrPort("127.0.0.1:40022"), st, []string{"cat", "/etc/hostname"})
	want := []string{"ssh", "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/run/vmrun/web/known_hosts",
		"-o", "HostKeyAlias=vmrun-web", "-o", "LogLevel=ERROR", "-p", "40022",
		"-i", "/home/alice/.ssh/id_ed25519", "-l", "alice", "127.0.0.1", "--", "cat", "/etc/hostname"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("argv\n got %q\nwant %q", got, want)
	}
	// No seed: ssh's own user and keys; port 22 is not named.
	got = Argv("/run/vmrun/web", "web", netip.MustParseAddrPort("192.168.1.57:22"), &rundir.State{}, nil)
	if got[len(got)-1] != "192.168.1.57" || strings.Contains(strings.Join(got, " "), " -p ") || strings.Contains(strings.Join(got, " "), " -l ") {
		t.Errorf("argv without a seed: %q", got)
	}
}

func TestSSHForward(t *testing.T) {
	seed := true
	// User mode with a seed: a forward from a free loopback port to 22.
	plan := netsetup.Plan{Mode: netsetup.User}
	got, err := Forward(seed, &plan)
	if err != nil || !strings.HasPrefix(got, "127.0.0.1:") || len(plan.Forwards) != 1 ||
		plan.Forwards[0].GuestPort != 22 || plan.Forwards[0].HostAddr != "127.0.0.1" {
		t.Fatalf("user mode: %q %v, forwards %+v", got, err, plan.Forwards)
	}
	// The user's own forward to port 22 is taken, none is added.
	plan = netsetup.Plan{Mode: netsetup.User, Forwards: []netsetup.Forward{{Proto: "tcp", HostPort: 2222, GuestPort: 22}}}
	if got, err := Forward(seed, &plan); err != nil || got != "127.0.0.1:2222" || len(plan.Forwards) != 1 {
		t.Errorf("user mode with --forward tcp:2222:22: %q %v, forwards %+v", got, err, plan.Forwards)
	}
	// Without a seed, or in a mode where the guest has its own address: none.
	for _, tc := range []struct {
		seed bool
		mode netsetup.Mode
	}{{false, netsetup.User}, {seed, netsetup.Macvtap}, {seed, netsetup.NAT}} {
		plan := netsetup.Plan{Mode: tc.mode}
		if got, err := Forward(tc.seed, &plan); err != nil || got != "" || len(plan.Forwards) != 0 {
			t.Errorf("%s, seed %v: %q %v, forwards %+v", tc.mode, tc.seed, got, err, plan.Forwards)
		}
	}
}

// TestRunWaits: on a terminal, a wait that lasts says so once, naming the
// VM and the bound, and a guest that never gets an address ends it with
// exit 124 and the reason; without a terminal nothing is said.
func TestRunWaits(t *testing.T) {
	testutil.RequireCmd(t, "ssh")
	root := t.TempDir()
	d, _, err := rundir.Create(root, "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	if err := d.Update(func(s *rundir.State) { s.Name = "web" }); err != nil {
		t.Fatal(err)
	}
	for _, terminal := range []bool{true, false} {
		var stderr lockedBuffer // written from the wait's timer
		err := Run(root, "web", time.Second, []string{"true"}, &stderr, terminal)
		if exitcode.Of(err) != exitcode.Timeout || !strings.Contains(err.Error(), "no address yet") {
			t.Errorf("terminal %v: %v (exit %d); want exit 124, no address yet", terminal, err, exitcode.Of(err))
		}
		want := ""
		if terminal {
			want = "vmrun: waiting for web's SSH server (at most 1s)...\n"
		}
		if stderr.String() != want {
			t.Errorf("terminal %v: stderr %q, want %q", terminal, stderr.String(), want)
		}
	}
}

// lockedBuffer is a strings.Builder safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
