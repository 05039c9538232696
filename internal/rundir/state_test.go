package rundir

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestStateFileKeys pins the state file's keys. Each one is written by
// vmrun and read by gc, ls or stop; a field nothing writes (as guest_ip
// was) misleads whoever reads the file, so it has no place here. ssh is
// written by a run with a cloud-init seed and read by `vmrun ssh`; uplink
// by a run (and each switch) and read by ls; netns and netns_inode by a
// run and read by gc.
func TestStateFileKeys(t *testing.T) {
	want := []string{"name", "pid", "qemu_pid", "mode", "parent", "uplink", "mac", "switches", "started", "netns", "netns_inode", "objects", "qmp_socket", "addresses", "ssh"}
	var got []string
	st := reflect.TypeOf(State{})
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		got = append(got, name)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state file keys %q, want %q", got, want)
	}
}

// TestSetAddress: an address is added once, keeps when it was first
// learnt, is upgraded by a DHCP server's word but not downgraded by
// weaker evidence (nor replaced by the guest agent's), is dropped when given up, and every change is in the
// state file a reader sees.
func TestSetAddress(t *testing.T) {
	d, _, err := Create(t.TempDir(), "addr")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	steps := []struct {
		a           Address
		drop        bool
		wantChanged bool
		want        []Address
	}{
		{Address{Addr: "10.0.0.5", Source: "arp", Learnt: t0}, false, true,
			[]Address{{Addr: "10.0.0.5", Source: "arp", Learnt: t0}}},
		{Address{Addr: "10.0.0.5", Source: "arp", Learnt: t0.Add(time.Second)}, false, false,
			[]Address{{Addr: "10.0.0.5", Source: "arp", Learnt: t0}}},
		{Address{Addr: "10.0.0.5", Source: "dhcp", Server: "10.0.0.1", Learnt: t0.Add(time.Second)}, false, true,
			[]Address{{Addr: "10.0.0.5", Source: "dhcp", Server: "10.0.0.1", Learnt: t0}}},
		{Address{Addr: "10.0.0.5", Source: "arp", Learnt: t0.Add(2 * time.Second)}, false, false,
			[]Address{{Addr: "10.0.0.5", Source: "dhcp", Server: "10.0.0.1", Learnt: t0}}},
		{Address{Addr: "fd00::5", Source: "ndp", Learnt: t0.Add(3 * time.Second)}, false, true,
			[]Address{{Addr: "10.0.0.5", Source: "dhcp", Server: "10.0.0.1", Learnt: t0}, {Addr: "fd00::5", Source: "ndp", Learnt: t0.Add(3 * time.Second)}}},
		{Address{Addr: "10.0.0.5"}, true, true,
			[]Address{{Addr: "fd00::5", Source: "ndp", Learnt: t0.Add(3 * time.Second)}}},
		{Address{Addr: "10.0.0.9"}, true, false,
			[]Address{{Addr: "fd00::5", Source: "ndp", Learnt: t0.Add(3 * time.Second)}}},
		// The guest agent's word adds an address, and keeps another
		// source's evidence for one already known.
		{Address{Addr: "fd00::5", Source: "agent", Learnt: t0.Add(4 * time.Second)}, false, false,
			[]Address{{Addr: "fd00::5", Source: "ndp", Learnt: t0.Add(3 * time.Second)}}},
		{Address{Addr: "192.0.2.7", Source: "agent", Learnt: t0.Add(5 * time.Second)}, false, true,
			[]Address{{Addr: "fd00::5", Source: "ndp", Learnt: t0.Add(3 * time.Second)}, {Addr: "192.0.2.7", Source: "agent", Learnt: t0.Add(5 * time.Second)}}},
	}
	for i, s := range steps {
		changed, err := d.SetAddress(s.a, s.drop)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if changed != s.wantChanged {
			t.Errorf("step %d: changed %v, want %v", i, changed, s.wantChanged)
		}
		if got := d.State().Addresses; !reflect.DeepEqual(got, s.want) {
			t.Errorf("step %d: addresses %+v, want %+v", i, got, s.want)
		}
		if s.wantChanged {
			st, err := ReadState(d.Path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st.Addresses, s.want) {
				t.Errorf("step %d: state file has %+v, want %+v", i, st.Addresses, s.want)
			}
		}
	}
}
