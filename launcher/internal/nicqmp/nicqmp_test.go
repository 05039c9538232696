package nicqmp

import (
	"encoding/json"
	"net"
	"testing"
)

// TestBackendArgs: what SwapNIC can plug in live, and netdev_add's
// arguments for each backend, as QEMU 7.2's QMP takes them (user mode's
// hostfwd is a list of {"str": RULE}). A stream backend (passt) is not
// plugged in live (see Swappable).
func TestBackendArgs(t *testing.T) {
	tests := []struct {
		name      string
		backend   string
		options   []string
		files     int
		swappable bool
		want      string // netdev_add's arguments as JSON; "" when not swappable
	}{
		{"tap", "tap", nil, 1, true, `{"fd":"net1-q0","id":"net1","type":"tap","vhost":false}`},
		{"tap with two queues", "tap", nil, 2, true, `{"fds":"net1-q0:net1-q1","id":"net1","type":"tap","vhost":false}`},
		{"tap with options", "tap", []string{"script=no"}, 1, false, ""},
		{"tap without fds", "tap", nil, 0, false, ""},
		{"user", "user", nil, 0, true, `{"id":"net1","type":"user"}`},
		{"user with forwards", "user", []string{"hostfwd=tcp:127.0.0.1:2222-:22", "hostfwd=udp::53-:53"}, 0, true,
			`{"hostfwd":[{"str":"tcp:127.0.0.1:2222-:22"},{"str":"udp::53-:53"}],"id":"net1","type":"user"}`},
		{"user with another option", "user", []string{"restrict=on"}, 0, false, ""},
		{"passt's socket", "stream", nil, 1, false, ""},
		{"stream without a socket", "stream", nil, 0, false, ""},
		{"socket", "socket", nil, 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Swappable(tt.backend, tt.options, tt.files, 0); got != tt.swappable {
				t.Fatalf("Swappable = %v, want %v", got, tt.swappable)
			}
			if !tt.swappable {
				return
			}
			var names []string
			for i := range tt.files {
				names = append(names, "net1-q"+string(rune('0'+i)))
			}
			b, err := json.Marshal(BackendArgs("net1", tt.backend, tt.options, names, nil))
			if err != nil || string(b) != tt.want {
				t.Fatalf("netdev_add arguments %s (%v), want %s", b, err, tt.want)
			}
		})
	}
}

// TestDeviceArgs: device_add's arguments alternate between the two root
// ports, and carry the MTU and the queues only when they are not the
// defaults.
func TestDeviceArgs(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	for _, tt := range []struct {
		n, mtu, queues int
		want           string
	}{
		{0, 0, 1, `{"bus":"vmrun-rp0","driver":"virtio-net-pci","id":"nic0","mac":"52:54:00:00:00:01","netdev":"net0","romfile":""}`},
		{3, 1500, 1, `{"bus":"vmrun-rp1","driver":"virtio-net-pci","id":"nic3","mac":"52:54:00:00:00:01","netdev":"net3","romfile":""}`},
		{2, 9000, 2, `{"bus":"vmrun-rp0","driver":"virtio-net-pci","host_mtu":9000,"id":"nic2","mac":"52:54:00:00:00:01","mq":true,"netdev":"net2","romfile":"","vectors":6}`},
	} {
		b, err := json.Marshal(DeviceArgs(tt.n, mac, tt.mtu, tt.queues))
		if err != nil || string(b) != tt.want {
			t.Errorf("DeviceArgs(%d, mtu %d, %d queues) = %s (%v), want %s", tt.n, tt.mtu, tt.queues, b, err, tt.want)
		}
	}
}
