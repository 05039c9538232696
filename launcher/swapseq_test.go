package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrun/vmrun/launcher/internal/eject"
	"github.com/vmrun/vmrun/qmp"
)

// fakeQEMU answers QMP as QEMU 7.2 does for a NIC swap (every command
// succeeds unless named in fail), records each command with its id
// argument ("device_del nic0", "device_add nic1 vmrun-rp1 net1"), and
// announces DEVICE_DELETED for a device_del's device once eject is
// closed: the guest's eject, held until the test lets it happen.
//
// With late, DEVICE_DELETED comes as QEMU 7.2 sends it under load: the
// device leaves the device tree (qom-list) at the eject, and its
// DEVICE_DELETED only after a qom-list has seen it gone (recorded as
// "(DEVICE_DELETED id)").
type fakeQEMU struct {
	fail    map[string]bool // "device_add nic1" fails
	eject   chan struct{}
	delSeen chan struct{} // closed at the first device_del
	late    bool
	macs    bool        // record device_add's mac too ("device_add nic0 ... mac=52:54:...")
	cmdc    chan string // each command recorded, when not nil

	mu      sync.Mutex
	w       *bufio.Writer
	cmds    []string
	present map[string]bool // the devices in the tree
	pending string          // a late DEVICE_DELETED still to send
}

func (f *fakeQEMU) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

func (f *fakeQEMU) write(v any) {
	b, _ := json.Marshal(v)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.w.Write(append(b, '\n'))
	f.w.Flush()
}

// serve runs one connection (fds passed with getfd are read and closed).
func (f *fakeQEMU) serve(conn *net.UnixConn) {
	defer conn.Close()
	f.w = bufio.NewWriter(conn)
	f.write(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}, "package": ""}, "capabilities": []string{"oob"}}})
	var pending []byte
	for {
		buf, oob := make([]byte, 4096), make([]byte, 64)
		n, _, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		pending = append(pending, buf[:n]...)
		for {
			i := strings.IndexByte(string(pending), '\n')
			if i < 0 {
				break
			}
			var c struct {
				Execute   string         `json:"execute"`
				Arguments map[string]any `json:"arguments"`
			}
			_ = json.Unmarshal(pending[:i], &c)
			pending = pending[i+1:]
			f.answer(c.Execute, c.Arguments)
		}
	}
}

func (f *fakeQEMU) answer(cmd string, args map[string]any) {
	if cmd == "qom-list" && !f.fail["qom-list"] {
		f.qomList()
		return
	}
	line := cmd
	for _, k := range []string{"id", "fdname", "bus", "netdev"} {
		if v, ok := args[k].(string); ok {
			line += " " + v
		}
	}
	if v, ok := args["mac"].(string); ok && f.macs {
		line += " mac=" + v
	}
	if cmd != "qmp_capabilities" {
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
		if f.cmdc != nil {
			f.cmdc <- line
		}
	}
	if cmd == "device_del" && f.delSeen != nil {
		close(f.delSeen)
		f.delSeen = nil
	}
	for k := range f.fail {
		if strings.HasPrefix(line, k) {
			f.write(map[string]any{"error": map[string]string{"class": "GenericError", "desc": k + ": refused"}})
			return
		}
	}
	f.write(map[string]any{"return": map[string]any{}})
	id := fmt.Sprint(args["id"])
	switch {
	case cmd == "device_add":
		f.mu.Lock()
		f.present[id] = true
		f.mu.Unlock()
	case cmd == "device_del":
		go func() {
			<-f.eject
			f.mu.Lock()
			delete(f.present, id)
			if f.late {
				f.pending = id
				f.mu.Unlock()
				return
			}
			f.mu.Unlock()
			f.deleted(id)
		}()
	}
}

func (f *fakeQEMU) deleted(id string) {
	f.write(map[string]any{"event": "DEVICE_DELETED", "data": map[string]any{"device": id, "path": "/machine/peripheral/" + id},
		"timestamp": map[string]int{"seconds": 1, "microseconds": 0}})
}

// qomList answers qom-list /machine/peripheral, then sends a late
// DEVICE_DELETED for a device it did not list.
func (f *fakeQEMU) qomList() {
	f.mu.Lock()
	children := []map[string]string{{"name": "type", "type": "string"}}
	for id := range f.present {
		children = append(children, map[string]string{"name": id, "type": "child<virtio-net-pci>"})
	}
	id := f.pending
	if id != "" && !f.present[id] {
		f.pending = ""
		f.cmds = append(f.cmds, "(DEVICE_DELETED "+id+")")
	} else {
		id = ""
	}
	f.mu.Unlock()
	f.write(map[string]any{"return": children})
	if id != "" {
		f.deleted(id)
	}
}

// TestSwapSequence drives nicSwapper's swap against fakeQEMU: device_del
// goes first and the new NIC is made (the caller's build) while the guest
// ejects; device_add waits for DEVICE_DELETED. Whatever fails after
// device_del, the guest gets its old NIC back on its netdev, and a new
// netdev added is removed again.
func TestSwapSequence(t *testing.T) {
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	nic := NIC{Backend: "tap", Files: []*os.File{tap}, MAC: mac}
	cases := []struct {
		name     string
		late     bool
		fail     string
		buildErr error
		live     bool
		wantErr  string
		want     []string
	}{
		{"clean", false, "", nil, true, "",
			[]string{"device_del nic0", "getfd net1-q0", "netdev_add net1", "device_add nic1 vmrun-rp1 net1", "netdev_del net0"}},
		{"the set-up fails", false, "", errors.New("macvtap: address in use"), false, "macvtap: address in use (the guest got its old NIC back)",
			[]string{"device_del nic0", "device_add nic0 vmrun-rp0 net0"}},
		{"netdev_add refused", false, "netdev_add", nil, false, "QMP netdev_add: netdev_add: refused (the guest got its old NIC back)",
			[]string{"device_del nic0", "getfd net1-q0", "netdev_add net1", "closefd net1-q0", "device_add nic0 vmrun-rp0 net0"}},
		{"device_add refused", false, "device_add nic1", nil, false, "QMP device_add: device_add nic1: refused (the guest got its old NIC back)",
			[]string{"device_del nic0", "getfd net1-q0", "netdev_add net1", "device_add nic1 vmrun-rp1 net1", "device_add nic0 vmrun-rp0 net0", "netdev_del net1"}},
		{"device_del refused", false, "device_del", nil, false, "QMP device_del: device_del: refused", []string{"device_del nic0"}},
		{"the old NIC cannot come back", false, "device_add", errors.New("boom"), false, "plugging the old NIC back: QMP device_add: device_add: refused",
			[]string{"device_del nic0", "device_add nic0 vmrun-rp0 net0"}},
		{"DEVICE_DELETED late: the tree says the guest let go", true, "", nil, true, "",
			[]string{"device_del nic0", "getfd net1-q0", "netdev_add net1", "(DEVICE_DELETED nic0)", "device_add nic1 vmrun-rp1 net1", "netdev_del net0"}},
		{"DEVICE_DELETED late, the set-up fails: the old NIC back after it", true, "", errors.New("no lease"), false, "no lease (the guest got its old NIC back)",
			[]string{"device_del nic0", "(DEVICE_DELETED nic0)", "device_add nic0 vmrun-rp0 net0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan struct{})
			f := &fakeQEMU{fail: map[string]bool{}, eject: make(chan struct{}), delSeen: seen, late: tc.late, present: map[string]bool{"nic0": true}}
			if tc.fail != "" {
				f.fail[tc.fail] = true
			}
			w := connectFake(t, f)
			r := swapReq{ctx: context.Background(), nic: nic, built: make(chan builtNIC, 1), done: make(chan error, 1)}
			live := false
			r.live = func() { live = true }
			go func() { r.done <- w.run(r) }()
			// The caller's build, as SwapNICBuild runs it: device_del is
			// on its way, the guest has not released its NIC yet.
			select {
			case <-seen:
			case <-time.After(10 * time.Second):
				t.Fatalf("no device_del before the build; sent %q", f.sent())
			}
			r.built <- builtNIC{nic, tc.buildErr}
			close(f.eject)
			err := <-r.done
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("swap: %v, want an error containing %q; sent %q", err, tc.wantErr, f.sent())
			}
			if live != tc.live {
				t.Errorf("live %v, want %v", live, tc.live)
			}
			if got := f.sent(); !slices.Equal(got, tc.want) {
				t.Errorf("QMP commands\n  %q\nwant\n  %q", got, tc.want)
			}
			if wantSeq := map[bool]int{true: 1}[tc.live]; w.seq != wantSeq {
				t.Errorf("the current NIC is number %d, want %d", w.seq, wantSeq)
			}
		})
	}
}

// TestSwapPlugBackBootMAC: a first swap that fails plugs the boot's NIC
// (plugged in over QMP, as --net auto's is) back with its own MAC, not the
// new NIC's (an ipvtap re-attached under a new MAC once got the old NIC
// back with the new MAC, which the LAN would not have delivered to).
func TestSwapPlugBackBootMAC(t *testing.T) {
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	boot := NIC{Backend: "tap", Files: []*os.File{tap}, MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}}
	next := NIC{Backend: "tap", Files: []*os.File{tap}, MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}}
	f := &fakeQEMU{fail: map[string]bool{"device_add nic1": true}, eject: make(chan struct{}), macs: true, present: map[string]bool{}}
	w := connectFake(t, f)
	if err := w.plug(context.Background(), boot); err != nil {
		t.Fatal(err)
	}
	close(f.eject)
	r := swapReq{ctx: context.Background(), nic: next, built: make(chan builtNIC, 1), done: make(chan error, 1)}
	r.built <- builtNIC{next, nil}
	if err := w.run(r); err == nil || !strings.Contains(err.Error(), "the guest got its old NIC back") {
		t.Fatalf("swap: %v; sent %q", err, f.sent())
	}
	want := "device_add nic0 vmrun-rp0 net0 mac=" + boot.MAC.String()
	if got := f.sent(); got[len(got)-2] != want {
		t.Errorf("QMP commands\n  %q\nwant the old NIC back as\n  %q", got, want)
	}
}

// TestSwapLateRelease: when the guest releases its old NIC only after
// the swap stopped waiting (the swap failed, the device_del still pending
// in QEMU), the old NIC is plugged back in on its netdev, so the guest is
// not left without one.
func TestSwapLateRelease(t *testing.T) {
	defer func(d time.Duration) { deviceDeletedWait = d }(deviceDeletedWait)
	deviceDeletedWait = 50 * time.Millisecond
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	nic := NIC{Backend: "tap", Files: []*os.File{tap}, MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}}
	f := &fakeQEMU{fail: map[string]bool{}, eject: make(chan struct{}), present: map[string]bool{"nic0": true}, cmdc: make(chan string, 32)}
	w := connectFake(t, f)
	r := swapReq{ctx: context.Background(), nic: nic, built: make(chan builtNIC, 1), done: make(chan error, 1)}
	r.built <- builtNIC{nic, nil}
	if err := w.run(r); !errors.Is(err, eject.ErrNotReleased) {
		t.Fatalf("swap with the eject held: %v, want ErrNotReleased; sent %q", err, f.sent())
	}
	close(f.eject) // the guest lets go now
	for {
		select {
		case line := <-f.cmdc:
			if line == "device_add nic0 vmrun-rp0 net0" {
				return
			}
		case <-time.After(time.Minute):
			t.Fatalf("the old NIC was not plugged back in after its late release; sent %q", f.sent())
		}
	}
}

// TestReplugSkips: a late release's plug-back does nothing when a swap
// gave the guest another NIC meanwhile, or the device is there again.
func TestReplugSkips(t *testing.T) {
	f := &fakeQEMU{fail: map[string]bool{}, eject: make(chan struct{}), present: map[string]bool{"nic0": true}}
	w := connectFake(t, f)
	back := nicArgs(0, NIC{MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}})
	w.replug("nic0", 0, back) // nic0 is present
	w.seq = 1
	f.mu.Lock()
	delete(f.present, "nic0")
	f.mu.Unlock()
	w.replug("nic0", 0, back) // the guest is on NIC 1 now
	if got := f.sent(); len(got) != 0 {
		t.Errorf("QMP commands %q, want none", got)
	}
	w.seq = 0
	w.replug("nic0", 0, back)
	if got := f.sent(); !slices.Equal(got, []string{"device_add nic0 vmrun-rp0 net0"}) {
		t.Errorf("QMP commands %q, want the plug-back", got)
	}
}

// TestReleasedTreeUnreadable: when QEMU refuses qom-list, the wait for
// the guest's release goes on DEVICE_DELETED alone (it once took the
// refusal for a release, and a NIC would have been plugged in beside the
// old one).
func TestReleasedTreeUnreadable(t *testing.T) {
	f := &fakeQEMU{fail: map[string]bool{"qom-list": true}, eject: make(chan struct{}), present: map[string]bool{"nic0": true}}
	w := connectFake(t, f)
	deleted := make(chan string, 1)
	if _, err := eject.Released(context.Background(), w.c, deleted, "nic0", 200*time.Millisecond); err == nil {
		t.Fatalf("released with the device tree unreadable and no DEVICE_DELETED; sent %q", f.sent())
	}
	deleted <- "nic0"
	if event, err := eject.Released(context.Background(), w.c, deleted, "nic0", time.Minute); err != nil || !event {
		t.Fatalf("with DEVICE_DELETED: event %v, %v; want the event", event, err)
	}
}

// connectFake connects a nicSwapper to f, with the supervisor's part: each
// DEVICE_DELETED's id goes to the swapper.
func connectFake(t *testing.T, f *fakeQEMU) *nicSwapper {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if conn, err := ln.AcceptUnix(); err == nil {
			f.serve(conn)
		}
	}()
	c, err := qmp.Connect(context.Background(), path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := &nicSwapper{c: c, deleted: make(chan string, 8), step: func(string, ...any) {}, notify: func(string, ...any) {}}
	go func() {
		for ev := range c.Events() {
			if id := ev.String("device"); ev.Name == qmp.EventDeviceDeleted && !w.released(id) {
				w.deleted <- id
			}
		}
	}()
	return w
}
