package watch

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/mdlayher/genetlink"
	"github.com/vmrun/vmrun/netsetup/internal/detect"
	"golang.org/x/sys/unix"
)

// nl80211 multicast groups whose messages may change the uplink: "mlme"
// carries CONNECT, ROAM, DISCONNECT, (DE)AUTHENTICATE and
// (DIS)ASSOCIATE; "config" carries interfaces appearing, going and
// changing type.
var wifiGroups = []string{"mlme", "config"}

// wifiEvents joins nl80211's association groups in this thread's network
// namespace and calls poke for each message, until the returned stop is
// called. A kernel without nl80211 (no Wi-Fi driver loaded) has nothing to
// join: the link events still cover an interface that appears later, and
// its association is read again on each detection. Where sysfs lists no
// cfg80211 (detect.NoCfg80211) nl80211 is not asked: the kernel would try
// to load cfg80211 for it.
func wifiEvents(poke func(), fail func(error)) (stop func(), err error) {
	if detect.NoCfg80211("/sys") {
		return func() {}, nil
	}
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("generic netlink: %w", err)
	}
	fam, err := c.GetFamily(unix.NL80211_GENL_NAME)
	if errors.Is(err, os.ErrNotExist) {
		c.Close()
		return func() {}, nil
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("nl80211: %w", err)
	}
	for _, g := range fam.Groups {
		for _, want := range wifiGroups {
			if g.Name == want {
				if err := c.JoinGroup(g.ID); err != nil {
					c.Close()
					return nil, fmt.Errorf("join nl80211 group %s: %w", g.Name, err)
				}
			}
		}
	}
	done := make(chan struct{})
	var stopped atomic.Bool
	go func() {
		defer close(done)
		for {
			if _, _, err := c.Receive(); err != nil {
				if !stopped.Load() {
					fail(fmt.Errorf("nl80211 events: %w", err))
				}
				return
			}
			poke()
		}
	}()
	return func() { stopped.Store(true); c.Close(); <-done }, nil
}
