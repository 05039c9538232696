package launcher

import (
	"encoding/json"
	"net"
	"os"
	"testing"
)

// TestBackendArgs: what SwapNIC can plug in live, and netdev_add's
// arguments for each backend, as QEMU 7.2's QMP takes them (user mode's
// hostfwd is a list of {"str": RULE}). A stream backend (passt) is not
// plugged in live (see swappable).
func TestBackendArgs(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	f := os.NewFile(0, "placeholder") // never used as an fd here
	tests := []struct {
		name      string
		nic       NIC
		swappable bool
		want      string // netdev_add's arguments as JSON; "" when not swappable
	}{
		{"tap", NIC{Backend: "tap", Files: []*os.File{f}, MAC: mac}, true, `{"fd":"net1-q0","id":"net1","type":"tap","vhost":false}`},
		{"tap with options", NIC{Backend: "tap", Files: []*os.File{f}, Options: []string{"script=no"}}, false, ""},
		{"tap without fds", NIC{Backend: "tap"}, false, ""},
		{"user", NIC{Backend: "user", MAC: mac}, true, `{"id":"net1","type":"user"}`},
		{"user with forwards", NIC{Backend: "user", Options: []string{"hostfwd=tcp:127.0.0.1:2222-:22", "hostfwd=udp::53-:53"}}, true,
			`{"hostfwd":[{"str":"tcp:127.0.0.1:2222-:22"},{"str":"udp::53-:53"}],"id":"net1","type":"user"}`},
		{"user with another option", NIC{Backend: "user", Options: []string{"restrict=on"}}, false, ""},
		{"passt's socket", NIC{Backend: "stream", Files: []*os.File{f}}, false, ""},
		{"stream without a socket", NIC{Backend: "stream"}, false, ""},
		{"socket", NIC{Backend: "socket"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := swappable(tt.nic); got != tt.swappable {
				t.Fatalf("swappable = %v, want %v", got, tt.swappable)
			}
			if !tt.swappable {
				return
			}
			var names []string
			for i := range tt.nic.Files {
				names = append(names, "net1-q"+string(rune('0'+i)))
			}
			b, err := json.Marshal(backendArgs("net1", tt.nic, names, nil))
			if err != nil || string(b) != tt.want {
				t.Fatalf("netdev_add arguments %s (%v), want %s", b, err, tt.want)
			}
		})
	}
}
