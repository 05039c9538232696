package vmctl

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup/gc"
)

// TestListTableAndJSON: a live VM with an address and a stale one, as
// `vmrun ls` prints them; none at all is said in words, or [] in JSON.
func TestListTableAndJSON(t *testing.T) {
	root := t.TempDir()
	var empty bytes.Buffer
	if infos, err := List(root); err != nil || WriteList(&empty, infos, false) != nil || empty.String() != "no VMs are running\n" {
		t.Fatalf("no VMs: %q %v", empty.String(), err)
	}
	d, _, err := rundir.Create(root, "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	if err := d.Update(func(s *rundir.State) { *s = rundir.State{Name: "web", PID: 7, Mode: "macvtap", Parent: "eth0"} }); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetAddress(rundir.Address{Addr: "10.0.0.5", Source: "dhcp"}, false); err != nil {
		t.Fatal(err)
	}
	infos, err := List(root)
	if err != nil || len(infos) != 1 {
		t.Fatalf("List: %+v %v", infos, err)
	}
	var table, js bytes.Buffer
	if err := WriteList(&table, infos, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || strings.Join(strings.Fields(lines[1]), " ") != "web 7 macvtap:eth0 10.0.0.5(dhcp) running" {
		t.Errorf("table:\n%s", table.String())
	}
	if err := WriteList(&js, infos, true); err != nil || !strings.Contains(js.String(), `"addr": "10.0.0.5"`) || !strings.Contains(js.String(), `"started": null`) {
		t.Errorf("JSON: %v\n%s", err, js.String())
	}
}

// TestStaleNamesGCCommand: a stale VM's status names the command that
// cleans up after it, gc in the network namespace its vmrun ran in when
// that is another one (gc.Command, tested against real namespaces in
// netsetup's TestGCOtherNetns).
func TestStaleNamesGCCommand(t *testing.T) {
	root := t.TempDir()
	d, _, err := rundir.Create(root, "away")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Update(func(s *rundir.State) { *s = rundir.State{Name: "away", PID: 7, Netns: "c42", NetnsInode: 4026532173} }); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gcCommand = gc.Command })
	var asked *rundir.State
	gcCommand = func(st *rundir.State) string { asked = st; return "ip netns exec q vmrun gc" }
	infos, err := List(root)
	if err != nil || len(infos) != 1 {
		t.Fatalf("List: %+v %v", infos, err)
	}
	if want := "stale (run `ip netns exec q vmrun gc`)"; infos[0].Status != want || asked == nil || asked.Netns != "c42" {
		t.Errorf("status %q (asked about %+v), want %q", infos[0].Status, asked, want)
	}
}
