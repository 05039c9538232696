package rundir

import (
	"reflect"
	"strings"
	"testing"
)

// TestStateFileKeys pins the state file's keys. Each one is written by
// vmrun and read by gc, ls or stop; a field nothing writes (as guest_ip
// was) misleads whoever reads the file, so it has no place here.
func TestStateFileKeys(t *testing.T) {
	want := []string{"name", "pid", "qemu_pid", "mode", "parent", "mac", "started", "objects", "qmp_socket"}
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
