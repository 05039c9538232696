package netplan

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/netsetup"
)

// TestACLExitCodes: the allow-list's refusals are set-up failures (exit
// 2: the administrator's decision, not a bad request). Which plans the
// allow-list refuses, and --net auto's fallback, are netsetup's
// TestDecideLimits.
func TestACLExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := netsetup.Facts{Uplink: "eth1", Exists: true, Index: 2, Kind: netsetup.UplinkEthernet, LinkType: "device", Up: true,
		OperState: "up", MTU: 1500, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Route: &netsetup.Route{Family: "inet", Gateway: "192.0.2.1"}, CPUs: 1,
		Caps: netsetup.Caps{NetAdmin: true, NetRaw: true, SysAdmin: true, Tun: true, Macvtap: true, Mknod: true}}
	cases := []struct {
		name string
		acl  string
		mode netsetup.Mode
		want string
	}{
		{"nat needs root", write("allow.conf", "allow eth0\n"), netsetup.NAT, "--net nat needs root"},
		{"unreadable allow-list", write("bad.conf", "permit everything\n"), netsetup.Macvtap, "ask the administrator"},
		{"interface not allowed", write("allow.conf", "allow eth0\n"), netsetup.Macvtap, `add "allow eth1"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := netsetup.Decide(f, netsetup.Request{Name: "vm", Mode: c.mode, Limits: netsetup.LoadLimits(c.acl)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Decide: %v, want an error with %q", err, c.want)
			}
			if code := Code(err); code != exitcode.Setup {
				t.Fatalf("exit code %d, want %d (%v)", code, exitcode.Setup, err)
			}
		})
	}
}
