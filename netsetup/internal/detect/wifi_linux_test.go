package detect

import (
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"github.com/mdlayher/wifi"
	"golang.org/x/sys/unix"
)

func TestParseFourAddr(t *testing.T) {
	msg := func(attrs ...netlink.Attribute) genetlink.Message {
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			t.Fatal(err)
		}
		return genetlink.Message{Data: b}
	}
	ifindex := netlink.Attribute{Type: unix.NL80211_ATTR_IFINDEX, Data: nlenc.Uint32Bytes(5)}
	iftype := netlink.Attribute{Type: unix.NL80211_ATTR_IFTYPE, Data: nlenc.Uint32Bytes(unix.NL80211_IFTYPE_STATION)}
	tests := []struct {
		name string
		msgs []genetlink.Message
		want bool
	}{
		{"on", []genetlink.Message{msg(ifindex, iftype, netlink.Attribute{Type: unix.NL80211_ATTR_4ADDR, Data: []byte{1}})}, true},
		{"off", []genetlink.Message{msg(ifindex, netlink.Attribute{Type: unix.NL80211_ATTR_4ADDR, Data: []byte{0}}, iftype)}, false},
		{"absent", []genetlink.Message{msg(ifindex, iftype)}, false},
		{"no reply", nil, false},
	}
	for _, tt := range tests {
		got, err := parseFourAddr(tt.msgs)
		if err != nil || got != tt.want {
			t.Errorf("%s: %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := parseFourAddr([]genetlink.Message{{Data: []byte{0xff, 0, 1}}}); err == nil {
		t.Error("garbage accepted")
	}
}

func TestWifiType(t *testing.T) {
	for in, want := range map[wifi.InterfaceType]string{
		wifi.InterfaceTypeStation:     WifiStation,
		wifi.InterfaceTypeP2PClient:   WifiStation,
		wifi.InterfaceTypeAdHoc:       WifiAdHoc,
		wifi.InterfaceTypeAP:          WifiAP,
		wifi.InterfaceTypeMeshPoint:   WifiMesh,
		wifi.InterfaceTypeMonitor:     WifiMonitor,
		wifi.InterfaceTypeOCB:         WifiOther,
		wifi.InterfaceTypeAPVLAN:      WifiAPVLAN,
		wifi.InterfaceTypeUnspecified: WifiOther,
	} {
		if got := wifiType(in); got != want {
			t.Errorf("wifiType(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestWirelessOfLoopback: loopback (index 1) is not wireless, and that is
// not an error, on a kernel without cfg80211 (this machine: nl80211 is
// missing) and on one with it (the rig: nl80211 does not list lo).
func TestWirelessOfLoopback(t *testing.T) {
	_, nlErr := wifi.New()
	t.Logf("nl80211: %v", nlErr)
	w, err := wirelessOf(1)
	if w != nil || err != nil {
		t.Errorf("wirelessOf(lo) = %v, %v; want nil, nil", w, err)
	}
}
