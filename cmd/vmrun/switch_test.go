package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// TestSwitchAfterLive: once the new NIC is live under the guest, the
// switch has happened, whatever fails after it (the old backend's
// netdev_del in QEMU, the old attachment's removal): the new attachment
// stays current, the old one is removed as far as it can be, and the one
// stderr line names what was left behind. An error before the new NIC is
// live keeps the guest on the old attachment and undoes the new one. The
// QEMU side is a fake of launcher.Process.SwapNICLive here;
// TestFollowUplinkMovesGuest (test/e2e) switches a real guest.
func TestSwitchAfterLive(t *testing.T) {
	netdevDel := errors.New("the new NIC is live, but the old backend stays in QEMU: netdev_del net0: boom")
	cases := []struct {
		name      string
		live      bool  // the fake plugs the new NIC in
		swapErr   error // what the fake returns
		undoErr   error // the old attachment's removal
		switched  bool
		wantInErr string   // switchAttachment's error
		wantLine  []string // in the one stderr line
	}{
		{"clean", true, nil, nil, true, "", []string{"bridge → user (test); switched in", "ms after the host's first network event)"}},
		{"netdev_del fails after live", true, netdevDel, nil, true, "",
			[]string{"switched in", "left behind: the new NIC is live, but the old backend stays in QEMU", "vmrun gc"}},
		{"old attachment's removal fails", true, nil, errors.New("link vmrun-x: busy"), true, "",
			[]string{"switched in", "left behind: removing the bridge attachment: link vmrun-x: busy"}},
		{"both fail after live", true, netdevDel, errors.New("busy"), true, "",
			[]string{"old backend stays in QEMU", "removing the bridge attachment: busy"}},
		{"device_add fails", false, errors.New("device_add nic1: no slot"), nil, false, "switch to user: device_add nic1: no slot", nil},
		{"device_del refused", false, errors.New("device_del nic0: busy"), nil, false, "switch to user: device_del nic0: busy", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var notes []string
			s := &session{root: t.TempDir(), spec: config.Spec{Name: "vm", NetMode: netsetup.Auto}, step: func(string, ...any) {},
				notify: func(f string, a ...any) {
					if l := fmt.Sprintf(f, a...); strings.HasPrefix(l, "network:") {
						notes = append(notes, l)
					}
				}}
			s.addrs = s.newAddrBook() // user mode reports the guest's address
			if err := s.lock(); err != nil {
				t.Fatal(err)
			}
			defer s.dir.Remove()
			mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
			oldUndone := 0
			old := &netsetup.Attachment{Backend: "tap", MAC: mac, Undo: func() error { oldUndone++; return tc.undoErr }}
			oldPlan := netsetup.Plan{Mode: netsetup.Bridge, Name: "vm", MAC: mac}
			s.net.att, s.net.plan = old, oldPlan
			var plugged []launcher.NIC
			s.swap = func(_ context.Context, shape launcher.NIC, build func() (launcher.NIC, error), live func()) error {
				if shape.Backend != "user" {
					t.Fatalf("shape %+v announced, want a user-mode NIC", shape)
				}
				if tc.name == "device_del refused" {
					return tc.swapErr // before build: nothing made
				}
				nic, err := build()
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				plugged = append(plugged, nic)
				if tc.live {
					live()
				}
				return tc.swapErr
			}
			err := s.switchAttachment(context.Background(), netsetup.Plan{Mode: netsetup.User, Name: "vm", MAC: mac}, "test", time.Now().Add(-5*time.Millisecond))
			if wantBuilt := map[bool]int{true: 1}[tc.name != "device_del refused"]; len(plugged) != wantBuilt || wantBuilt == 1 && plugged[0].Backend != "user" {
				t.Fatalf("plugged %+v, want %d user-mode NIC", plugged, wantBuilt)
			}
			if tc.wantInErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantInErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantInErr)
				}
			} else if err != nil {
				t.Fatalf("switch failed: %v", err)
			}
			cur := s.net.currentPlan()
			if tc.switched != (cur.Mode == netsetup.User) || tc.switched != (s.net.current() != old) {
				t.Fatalf("current plan %s after the switch, switched %v", cur.Mode, tc.switched)
			}
			if got, want := s.net.switches, map[bool]int{true: 1}[tc.switched]; got != want {
				t.Errorf("%d switches counted, want %d", got, want)
			}
			if want := map[bool]int{true: 1}[tc.switched]; oldUndone != want {
				t.Errorf("old attachment undone %d times, want %d", oldUndone, want)
			}
			if !tc.switched {
				if len(notes) != 0 {
					t.Errorf("notices %q for a failed switch (its caller says it)", notes)
				}
				return
			}
			if len(notes) != 1 || strings.Contains(notes[0], "\n") {
				t.Fatalf("notices %q, want one line", notes)
			}
			for _, w := range tc.wantLine {
				if !strings.Contains(notes[0], w) {
					t.Errorf("line %q does not say %q", notes[0], w)
				}
			}
			if (tc.swapErr == nil && tc.undoErr == nil) == strings.Contains(notes[0], "left behind") {
				t.Errorf("line %q: says left behind when nothing was, or not when something was", notes[0])
			}
		})
	}
}
