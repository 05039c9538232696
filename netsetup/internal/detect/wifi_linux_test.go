package detect

import (
	"os"
	"path/filepath"
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
// not an error, on a kernel without cfg80211 (this machine: sysfs lists
// no cfg80211, nl80211 is not asked) and on one with it (the rig: nl80211
// does not list lo).
func TestWirelessOfLoopback(t *testing.T) {
	_, nlErr := wifi.New()
	t.Logf("nl80211: %v", nlErr)
	w, err := wirelessOf(1)
	if w != nil || err != nil {
		t.Errorf("wirelessOf(lo) = %v, %v; want nil, nil", w, err)
	}
}

// TestNoCfg80211: a sysfs whose module list lacks cfg80211 means no Wi-Fi;
// one that lists it, or no module list at all (no sysfs), does not.
func TestNoCfg80211(t *testing.T) {
	for _, tt := range []struct {
		name string
		dirs []string
		want bool
	}{
		{"modules without cfg80211", []string{"module/8250"}, true},
		{"cfg80211 listed", []string{"module/8250", "module/cfg80211"}, false},
		{"no sysfs", nil, false},
	} {
		sys := t.TempDir()
		for _, d := range tt.dirs {
			if err := os.MkdirAll(filepath.Join(sys, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if got := NoCfg80211(sys); got != tt.want {
			t.Errorf("%s: NoCfg80211 = %v, want %v", tt.name, got, tt.want)
		}
	}
	_, err := os.Stat("/sys/module/cfg80211")
	t.Logf("this kernel: NoCfg80211 = %v (/sys/module/cfg80211: %v)", NoCfg80211("/sys"), err)
}
