package detect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"github.com/mdlayher/wifi"
	"golang.org/x/sys/unix"
)

// wirelessOf returns nl80211's view of interface index, or nil when the
// kernel has no nl80211 (no Wi-Fi at all) or does not list the interface.
func wirelessOf(index int) (*Wireless, error) {
	if NoCfg80211("/sys") {
		return nil, nil
	}
	c, err := wifi.New()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nl80211: %w", err)
	}
	defer c.Close()
	ifis, err := c.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("nl80211 interfaces: %w", err)
	}
	for _, ifi := range ifis {
		if ifi.Index != index {
			continue
		}
		w := &Wireless{IfType: wifiType(ifi.Type)}
		// mdlayher/wifi does not report NL80211_ATTR_4ADDR: ask for it.
		if w.FourAddr, err = fourAddr(index); err != nil {
			return nil, fmt.Errorf("nl80211 4addr: %w", err)
		}
		return w, nil
	}
	return nil, nil
}

// NoCfg80211 says that the kernel has no Wi-Fi: sysfs (at sys) lists its
// modules, and cfg80211 — the configuration API every Wi-Fi driver
// registers with, whose parameters make it listed built in or loaded — is
// not among them. Asking nl80211 for its family then would make the kernel
// try to load cfg80211 (request_module for the family's name): a wired
// host's start would run modprobe, and load a module nothing there needs
// (or, where it is not installed, run modprobe in vain each time).
// Without sysfs (no sys/module) it says nothing, and nl80211 is asked.
// The uplink's watcher asks it too, before joining nl80211's groups.
func NoCfg80211(sys string) bool {
	if _, err := os.Stat(filepath.Join(sys, "module")); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(sys, "module", "cfg80211"))
	return errors.Is(err, os.ErrNotExist)
}

// wifiType names an nl80211 interface type.
func wifiType(t wifi.InterfaceType) string {
	switch t {
	case wifi.InterfaceTypeStation, wifi.InterfaceTypeP2PClient:
		return WifiStation
	case wifi.InterfaceTypeAdHoc:
		return WifiAdHoc
	case wifi.InterfaceTypeAP, wifi.InterfaceTypeP2PGroupOwner:
		return WifiAP
	case wifi.InterfaceTypeAPVLAN:
		return WifiAPVLAN
	case wifi.InterfaceTypeMeshPoint:
		return WifiMesh
	case wifi.InterfaceTypeMonitor:
		return WifiMonitor
	}
	return WifiOther
}

// fourAddr asks nl80211 (NL80211_CMD_GET_INTERFACE) whether interface
// index uses 4-address frames.
func fourAddr(index int) (bool, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return false, err
	}
	defer c.Close()
	fam, err := c.GetFamily(unix.NL80211_GENL_NAME)
	if err != nil {
		return false, err
	}
	b, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NL80211_ATTR_IFINDEX, Data: nlenc.Uint32Bytes(uint32(index))},
	})
	if err != nil {
		return false, err
	}
	req := genetlink.Message{Header: genetlink.Header{Command: unix.NL80211_CMD_GET_INTERFACE, Version: fam.Version}, Data: b}
	msgs, err := c.Execute(req, fam.ID, netlink.Request)
	if err != nil {
		return false, err
	}
	return parseFourAddr(msgs)
}

// parseFourAddr reads NL80211_ATTR_4ADDR from GET_INTERFACE replies
// (absent means off).
func parseFourAddr(msgs []genetlink.Message) (bool, error) {
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return false, err
		}
		for ad.Next() {
			if ad.Type() == unix.NL80211_ATTR_4ADDR {
				return ad.Uint8() != 0, nil
			}
		}
		if err := ad.Err(); err != nil {
			return false, err
		}
	}
	return false, nil
}

// Association returns the SSID and BSSID a Wi-Fi station on interface
// index is associated with (NL80211_CMD_GET_SCAN: the BSS it is
// associated with); empty when it is not, or nl80211 cannot say.
func Association(index int) (ssid, bssid string) {
	c, err := wifi.New()
	if err != nil {
		return "", ""
	}
	defer c.Close()
	ifis, err := c.Interfaces()
	if err != nil {
		return "", ""
	}
	for _, ifi := range ifis {
		if ifi.Index != index {
			continue
		}
		b, err := c.BSS(ifi)
		if err != nil || b == nil {
			return "", ""
		}
		return b.SSID, b.BSSID.String()
	}
	return "", ""
}
