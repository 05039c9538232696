package user

import (
	"reflect"
	"testing"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

func TestPasstArgs(t *testing.T) {
	got := passtArgs([]hostnet.Forward{
		{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 18080, GuestPort: 80},
		{Proto: "tcp", HostPort: 2222, GuestPort: 22},
		{Proto: "udp", HostAddr: "::1", HostPort: 5353, GuestPort: 53},
	})
	want := []string{"--foreground", "--quiet", "--fd", "3",
		"--tcp-ports", "127.0.0.1/18080:80", "--tcp-ports", "2222:22", "--udp-ports", "::1/5353:53"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	want = []string{"--foreground", "--quiet", "--fd", "3", "--udp-ports", "none"}
	if got := passtArgs(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("no forwards: %q", got)
	}
}
