package dnsforward

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       []string
	}{
		{"stub", "# written by systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", []string{"127.0.0.53:53"}},
		{"order and IPv6", "; comment\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n", []string{"192.0.2.1:53", "[2001:db8::1]:53"}},
		{"zone", "nameserver fe80::1%eth0\n", []string{"[fe80::1%eth0]:53"}},
		{"trailing comments", "nameserver 192.0.2.1 # first\nnameserver 192.0.2.2#second\nnameserver 192.0.2.3;third", []string{"192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"}},
		{"blanks", "\n  nameserver\t192.0.2.1  \r\n\n", []string{"192.0.2.1:53"}},
		{"more than three", "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n", []string{"192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53", "192.0.2.4:53"}},
		{"commented out", "#nameserver 192.0.2.1\n; nameserver 192.0.2.2\n", nil},
		{"not an address", "nameserver dns.example\nnameserver\nnameserver #192.0.2.1\nnameservers 192.0.2.2\n", nil},
		{"other keywords", "domain example\nsearch example\noptions ndots:2\n", nil},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseResolvConf([]byte(tc.conf)); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestNoUpstream: a resolv.conf without a usable name server fails Start
// with ErrNoUpstream and the file's name.
func TestNoUpstream(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("# nameserver 192.0.2.1\nnameserver dns.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Start(Config{Addr: "127.0.0.1:0", ResolvConf: rc})
	if err == nil {
		f.Close()
		t.Fatal("accepted")
	}
	if !errors.Is(err, ErrNoUpstream) || !strings.Contains(err.Error(), rc) {
		t.Errorf("err = %v, want ErrNoUpstream naming %s", err, rc)
	}
}
