package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/netsetup"
)

// TestACLExitCodes: the allow-list's refusals are set-up failures (exit
// 2: the administrator's decision, not a bad request); --net auto falls
// back to user mode instead; root is not limited.
func TestACLExitCodes(t *testing.T) {
	dir := t.TempDir()
	old := netsetup.ACLPath
	t.Cleanup(func() { netsetup.ACLPath = old })
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	allowEth := write("allow.conf", "allow eth0\n")
	bad := write("bad.conf", "permit everything\n")
	f := netsetup.Facts{Uplink: "eth1", Kind: netsetup.UplinkEthernet, CPUs: 1,
		Caps: netsetup.Caps{NetAdmin: true, Tun: true, Macvtap: true, Mknod: true}}
	macvtap := netsetup.Plan{Name: "vm", Mode: netsetup.Macvtap, Parent: "eth1"}
	cases := []struct {
		name     string
		acl      string
		root     bool
		req      netsetup.Request
		plan     netsetup.Plan
		code     int
		want     string        // in the error, or in the notice when code is 0
		wantMode netsetup.Mode // the plan's mode when code is 0
	}{
		{"root is not limited", allowEth, true, netsetup.Request{Name: "vm", Mode: netsetup.Macvtap}, macvtap, exitcode.OK, "", netsetup.Macvtap},
		{"allowed interface", write("eth1.conf", "allow eth1\n"), false, netsetup.Request{Name: "vm", Mode: netsetup.Macvtap}, macvtap, exitcode.OK, "", netsetup.Macvtap},
		{"mode with no interface", allowEth, false, netsetup.Request{Name: "vm", Mode: netsetup.User}, netsetup.Plan{Name: "vm", Mode: netsetup.User}, exitcode.OK, "", netsetup.User},
		{"nat needs root", allowEth, false, netsetup.Request{Name: "vm", Mode: netsetup.NAT}, netsetup.Plan{Name: "vm", Mode: netsetup.NAT, Parent: netsetup.NATBridge}, exitcode.Setup, "--net nat needs root", ""},
		{"unreadable allow-list", bad, false, netsetup.Request{Name: "vm", Mode: netsetup.Macvtap}, macvtap, exitcode.Setup, "ask the administrator", ""},
		{"interface not allowed", allowEth, false, netsetup.Request{Name: "vm", Mode: netsetup.Macvtap}, macvtap, exitcode.Setup, `add "allow eth1"`, ""},
		{"auto falls back to user mode", allowEth, false, netsetup.Request{Name: "vm", Queues: 1}, macvtap, exitcode.OK, "using user-mode networking", netsetup.User},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			netsetup.ACLPath = c.acl
			p, err := applyACL(f, c.req, c.plan, c.root)
			if code := exitcode.Of(err); code != c.code {
				t.Fatalf("exit code %d, want %d (%v)", code, c.code, err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %q lacks %q", err, c.want)
				}
				return
			}
			if p.Mode != c.wantMode || !strings.Contains(p.Notice, c.want) {
				t.Fatalf("plan %s with notice %q, want %s with %q", p.Mode, p.Notice, c.wantMode, c.want)
			}
		})
	}
}
