package main

import (
	"flag"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// sshContext parses args as `vmrun ssh` would.
func sshContext(t *testing.T, args ...string) *cli.Context {
	t.Helper()
	set := flag.NewFlagSet("ssh", flag.ContinueOnError)
	set.Duration("timeout", sshDefaultTimeout, "")
	if err := set.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cli.NewContext(nil, set, nil)
}

func TestSSHArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		name    string
		timeout time.Duration
		cmd     []string
		err     string
	}{
		{[]string{"web"}, "web", sshDefaultTimeout, []string{}, ""},
		{[]string{"web", "--", "cat", "/etc/hostname"}, "web", sshDefaultTimeout, []string{"cat", "/etc/hostname"}, ""},
		{[]string{"web", "--timeout", "5s", "--", "false"}, "web", 5 * time.Second, []string{"false"}, ""},
		{[]string{"--timeout=7s", "web", "uptime"}, "web", 7 * time.Second, []string{"uptime"}, ""},
		{[]string{"web", "--", "ls", "-l"}, "web", sshDefaultTimeout, []string{"ls", "-l"}, ""},
		{[]string{}, "", 0, nil, "takes a VM name"},
		{[]string{"web", "-v"}, "", 0, nil, `unexpected "-v"`},
		{[]string{"web", "--timeout", "soon"}, "", 0, nil, "not a positive duration"},
		{[]string{"../x"}, "", 0, nil, ""},
	} {
		name, timeout, cmd, err := sshArgs(sshContext(t, tc.args...))
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
	got := sshArgv("/run/vmrun/web", "web", netip.MustParseAddrPort("127.0.0.1:40022"), st, []string{"cat", "/etc/hostname"})
	want := []string{"ssh", "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/run/vmrun/web/known_hosts",
		"-o", "HostKeyAlias=vmrun-web", "-o", "LogLevel=ERROR", "-p", "40022",
		"-i", "/home/alice/.ssh/id_ed25519", "-l", "alice", "127.0.0.1", "--", "cat", "/etc/hostname"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("argv\n got %q\nwant %q", got, want)
	}
	// No seed: ssh's own user and keys; port 22 is not named.
	got = sshArgv("/run/vmrun/web", "web", netip.MustParseAddrPort("192.168.1.57:22"), &rundir.State{}, nil)
	if got[len(got)-1] != "192.168.1.57" || strings.Contains(strings.Join(got, " "), " -p ") || strings.Contains(strings.Join(got, " "), " -l ") {
		t.Errorf("argv without a seed: %q", got)
	}
}
