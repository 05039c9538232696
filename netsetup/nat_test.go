package netsetup

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecideNAT(t *testing.T) {
	fws := []Forward{{Proto: "tcp", HostPort: 8080, GuestPort: 80}}
	p, err := Decide(ethFacts(), Request{Mode: NAT, Name: "vm1", Forwards: fws, NAT: NATOptions{Subnet: "10.5.0.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != NAT || p.Parent != NATBridge || p.LinkName != LinkName("vm1", RoleTap) || p.Queues != 4 || !p.Vhost ||
		!reflect.DeepEqual(p.Forwards, fws) || p.NAT == nil || p.NAT.Subnet != "10.5.0.0/24" || p.Notice != "" {
		t.Errorf("plan %+v", p)
	}
	if !strings.Contains(p.Reason, "private bridge vmrnat0") {
		t.Errorf("reason %q", p.Reason)
	}
	a := Preview(p)
	if a.Backend != "tap" || len(a.Files) != 4 {
		t.Errorf("preview %+v", a)
	}
	if p, err := Decide(noRouteFacts(), Request{Mode: NAT, Name: "vm1"}); err != nil || !strings.Contains(p.Notice, "no default route") {
		t.Errorf("no route: %+v, %v", p, err)
	}
	for name, tt := range map[string]struct {
		facts Facts
		req   Request
		is    error
		has   string
	}{
		"unprivileged": {with(ethFacts(), func(f *Facts) { f.Caps.NetAdmin = false }), Request{Mode: NAT}, ErrNoPrivilege, "CAP_NET_ADMIN"},
		"no tun":       {with(ethFacts(), func(f *Facts) { f.Caps.Tun = false }), Request{Mode: NAT}, ErrNoKernelSupport, "/dev/net/tun"},
		"IPv6 forward": {ethFacts(), Request{Mode: NAT, Forwards: []Forward{{Proto: "tcp", HostAddr: "::1", HostPort: 1, GuestPort: 2}}}, ErrBadRequest, "IPv4 only"},
		"same port twice": {ethFacts(), Request{Mode: NAT, Forwards: []Forward{{Proto: "tcp", HostPort: 1, GuestPort: 2}, {Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 1, GuestPort: 3}}},
			ErrBadRequest, "forwarded twice"},
	} {
		t.Run(name, func(t *testing.T) {
			r := tt.req
			r.Name = "vm1"
			if _, err := Decide(tt.facts, r); !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.has) {
				t.Errorf("got %v, want %v containing %q", err, tt.is, tt.has)
			}
		})
	}
}

func TestUserBackend(t *testing.T) {
	fws := []Forward{{Proto: "tcp", HostAddr: "::1", HostPort: 8080, GuestPort: 80}}
	p, err := Decide(ethFacts(), Request{Mode: User, Name: "vm1", Forwards: fws})
	if err != nil {
		t.Fatal(err)
	}
	if p.Passt != "/usr/bin/passt" || p.Notice != "" {
		t.Errorf("with passt and a route: passt %q, notice %q", p.Passt, p.Notice)
	}
	if a := Preview(p); a.Backend != "stream" || len(a.Files) != 1 || len(a.Options) != 0 {
		t.Errorf("passt preview %+v", a)
	}
	noPasst := with(ethFacts(), func(f *Facts) { f.Caps.Passt = "" })
	p, _ = Decide(noPasst, Request{Mode: User, Name: "vm1"})
	if p.Passt != "" || !strings.Contains(p.Notice, "passt is not installed") || strings.Contains(p.Notice, "\n") {
		t.Errorf("without passt: passt %q, notice %q", p.Passt, p.Notice)
	}
	// QEMU's slirp has IPv6 (on by default, fec0::/64 behind its NAT).
	if strings.Contains(p.Notice, "no IPv6") || !strings.Contains(p.Notice, "fec0::/64") {
		t.Errorf("without passt: the notice misstates slirp's IPv6: %q", p.Notice)
	}
	p, _ = Decide(noRouteFacts(), Request{Mode: User, Name: "vm1"})
	if p.Passt != "" || !strings.Contains(p.Notice, "passt needs a default route") {
		t.Errorf("without a route: passt %q, notice %q", p.Passt, p.Notice)
	}
	// Auto's user fallback makes the same choice, and says both things.
	f := with(wifiFacts(WifiMonitor, false), func(f *Facts) { f.Caps.Passt = "" })
	p, _ = Decide(f, Request{Name: "vm1"})
	if p.Mode != User || !strings.Contains(p.Notice, "monitor mode") || !strings.Contains(p.Notice, "passt is not installed") {
		t.Errorf("auto fallback: %s, %q", p.Mode, p.Notice)
	}
	p, _ = Decide(wifiFacts(WifiMonitor, false), Request{Name: "vm1"})
	if p.Mode != User || p.Passt == "" {
		t.Errorf("auto fallback with passt: %s, %q", p.Mode, p.Passt)
	}
}
