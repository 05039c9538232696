package netsetup

import (
	"errors"
	"strings"
	"testing"
)

func TestACL(t *testing.T) {
	a, err := ParseACL(strings.NewReader("# comment\n\nallow br0  # the LAN bridge\nallow eth0\ndeny eth0\n  allow   wlan0\n"))
	if err != nil {
		t.Fatal(err)
	}
	for iface, want := range map[string]bool{"br0": true, "wlan0": true, "eth0": false, "eth1": false, "all": false} {
		if got := a.Allows(iface); got != want {
			t.Errorf("%s: %v, want %v", iface, got, want)
		}
	}
	all, _ := ParseACL(strings.NewReader("allow all\ndeny wlan1\n"))
	if !all.Allows("anything") || all.Allows("wlan1") {
		t.Error("allow all / deny wlan1")
	}
	none, _ := ParseACL(strings.NewReader("allow all\ndeny all\n"))
	if none.Allows("br0") {
		t.Error("deny all must win")
	}
	if (ACL{}).Allows("br0") {
		t.Error("an empty ACL allows")
	}
	for _, bad := range []string{"permit br0\n", "allow\n", "allow br0 br1\n"} {
		if _, err := ParseACL(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if a, err := LoadACL("/nonexistent/allow.conf"); err != nil || a.Allows("br0") {
		t.Errorf("missing file: %v", err)
	}
	for mode, want := range map[Mode]string{Bridge: "br0", Macvtap: "br0", NAT: "br0", User: "", None: ""} {
		if got := ACLInterface(Plan{Mode: mode, Parent: "br0"}); got != want {
			t.Errorf("%s: %q", mode, got)
		}
	}
}

// TestDecideLimits: Decide applies the ACL of an unprivileged vmrun
// (Request.Limits): a refusal is the host's (not IsRequestError: the
// administrator's decision, exit 2), --net auto falls back to user mode
// instead, and root (no Limits) is not limited.
func TestDecideLimits(t *testing.T) {
	acl := func(text string) *Limits {
		a, err := ParseACL(strings.NewReader(text))
		return &Limits{ACL: a, Path: "/etc/vmrun/allow.conf", Err: err}
	}
	allowEth0 := acl("allow eth0\n")
	f := ethFacts()
	f.Uplink = "eth1"
	cases := []struct {
		name   string
		limits *Limits
		req    Request
		is     error  // the refusal's sentinel; nil when Decide succeeds
		want   string // in the error, or in the plan's notice
		mode   Mode   // the plan's mode
	}{
		{"root is not limited", nil, Request{Name: "vm", Mode: Macvtap}, nil, "", Macvtap},
		{"allowed interface", acl("allow eth1\n"), Request{Name: "vm", Mode: Macvtap}, nil, "", Macvtap},
		{"allow all", acl("allow all\n"), Request{Name: "vm", Mode: Macvtap}, nil, "", Macvtap},
		{"mode with no interface", allowEth0, Request{Name: "vm", Mode: User}, nil, "", User},
		{"nat needs root", allowEth0, Request{Name: "vm", Mode: NAT}, ErrNoPrivilege, "--net nat needs root", ""},
		{"unreadable allow-list", acl("permit everything\n"), Request{Name: "vm", Mode: Macvtap}, nil, "ask the administrator", ""},
		{"interface not allowed", allowEth0, Request{Name: "vm", Mode: Macvtap}, ErrNotAllowed, `add "allow eth1"`, ""},
		{"interface denied", acl("allow all\ndeny eth1\n"), Request{Name: "vm", Mode: Macvtap}, ErrNotAllowed, "eth1 is not allowed in /etc/vmrun/allow.conf", ""},
		{"auto falls back to user mode", allowEth0, Request{Name: "vm", Queues: 1}, nil, "eth1 is not allowed in /etc/vmrun/allow.conf (the interfaces an administrator lets unprivileged vmrun users attach guests to); using user-mode networking", User},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.req.Limits = c.limits
			p, err := Decide(f, c.req)
			refused := c.mode == ""
			switch {
			case refused && err == nil:
				t.Fatalf("Decide = %s plan, want a refusal with %q", p.Mode, c.want)
			case refused && (!strings.Contains(err.Error(), c.want) || c.is != nil && !errors.Is(err, c.is) || IsRequestError(err)):
				t.Fatalf("Decide error %q: want %q, classified %v, not a request error", err, c.want, c.is)
			case !refused && err != nil:
				t.Fatalf("Decide: %v", err)
			case !refused && (p.Mode != c.mode || !strings.Contains(p.Notice, c.want)):
				t.Fatalf("plan %s with notice %q, want %s with %q", p.Mode, p.Notice, c.mode, c.want)
			}
		})
	}
}
