package netsetup

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNet(t *testing.T) {
	good := []struct {
		in     string
		mode   Mode
		parent string
	}{
		{"auto", Auto, ""},
		{" AUTO ", Auto, ""},
		{"bridge", Bridge, ""},
		{"bridge:br0", Bridge, "br0"},
		{"macvtap:eth0", Macvtap, "eth0"},
		{"ipvtap:wlan0", IPVtap, "wlan0"},
		{"routed", Routed, ""},
		{"nat", NAT, ""},
		{"user", User, ""},
		{"none", None, ""},
		{"macvtap:abcdefghijklmno", Macvtap, "abcdefghijklmno"},
	}
	for _, tt := range good {
		m, p, err := ParseNet(tt.in)
		if err != nil || m != tt.mode || p != tt.parent {
			t.Errorf("ParseNet(%q) = %q, %q, %v; want %q, %q", tt.in, m, p, err, tt.mode, tt.parent)
		}
	}
	bad := []struct{ in, has string }{
		{"vde", "unknown network mode"},
		{"user:eth0", "takes no interface"},
		{"none:eth0", "takes no interface"},
		{"nat:eth0", "takes no interface"},
		{"macvtap:a/b", "not a valid interface name"},
		{"macvtap:abcdefghijklmnop", "not a valid interface name"},
	}
	for _, tt := range bad {
		_, _, err := ParseNet(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.has) {
			t.Errorf("ParseNet(%q) error %v, want one containing %q", tt.in, err, tt.has)
		}
	}
	if _, _, err := ParseNet("vde"); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("unknown mode error %v is not ErrUnknownMode", err)
	}
}

func TestParseMAC(t *testing.T) {
	m, err := ParseMAC(" 52:54:00:AB:cd:01 ")
	if err != nil || m.String() != "52:54:00:ab:cd:01" {
		t.Errorf("ParseMAC: %v %v", m, err)
	}
	for _, in := range []string{"", "52:54:00", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "52:54:00:12:34:56:78:9a", "zz:54:00:12:34:56"} {
		if _, err := ParseMAC(in); err == nil {
			t.Errorf("ParseMAC(%q) accepted", in)
		}
	}
}

func TestDeriveMAC(t *testing.T) {
	a, b := DeriveMAC("vm1"), DeriveMAC("vm2")
	if a.String() == b.String() {
		t.Error("two VMs share a MAC")
	}
	if a.String() != DeriveMAC("vm1").String() {
		t.Error("not deterministic")
	}
	if a[0] != 0x52 || a[1] != 0x54 || a[2] != 0 || len(a) != 6 {
		t.Errorf("MAC %s lacks the 52:54:00 prefix", a)
	}
	if _, err := ParseMAC(a.String()); err != nil {
		t.Errorf("derived MAC %s does not parse: %v", a, err)
	}
	seen := map[string]string{}
	for i := range 16 {
		name := "vm-" + string(rune('a'+i))
		m := DeriveMAC(name).String()
		if other, dup := seen[m]; dup {
			t.Errorf("%s and %s share MAC %s", name, other, m)
		}
		seen[m] = name
	}
}

func TestParseForward(t *testing.T) {
	good := []struct {
		in   string
		want Forward
	}{
		{"tcp:2222:22", Forward{Proto: "tcp", HostPort: 2222, GuestPort: 22}},
		{"UDP:5353:53", Forward{Proto: "udp", HostPort: 5353, GuestPort: 53}},
		{"tcp:127.0.0.1:8080:80", Forward{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 8080, GuestPort: 80}},
		{"tcp:[::1]:8080:80", Forward{Proto: "tcp", HostAddr: "::1", HostPort: 8080, GuestPort: 80}},
	}
	for _, tt := range good {
		f, err := ParseForward(tt.in)
		if err != nil || f != tt.want {
			t.Errorf("ParseForward(%q) = %+v, %v", tt.in, f, err)
		}
		if back, err := ParseForward(f.String()); err != nil || back != f {
			t.Errorf("String round trip of %+v: %q", f, f.String())
		}
	}
	for _, in := range []string{"tcp:22", "sctp:1:2", "tcp:0:22", "tcp:70000:22", "tcp:x:22", "tcp:nohost:1:2", "tcp:1:2:3:4", "tcp:[::1:8080:80", "tcp:[10.0.0.1]:1:2", "tcp:[::1]:1", "tcp:::1:8080:80"} {
		if _, err := ParseForward(in); err == nil {
			t.Errorf("ParseForward(%q) accepted", in)
		}
	}
}
