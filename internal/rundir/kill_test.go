package rundir

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

const recordChildEnv = "VMRUN_TEST_RECORD_ROOT"

// TestRecordSurvivesSIGKILL: a record is not synced to disk, yet once
// Record has returned, a vmrun killed at any later instant leaves it for
// gc. A child records objects as fast as it can, saying so after each; it
// is SIGKILLed after its n-th report, at different n, and the next Create
// must return a stale state holding (at least) every reported object, in
// order, with nothing invented.
func TestRecordSurvivesSIGKILL(t *testing.T) {
	for _, n := range []int{1, 2, 7, 30} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			root := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestRecordChild$")
			cmd.Env = append(os.Environ(), recordChildEnv+"="+root)
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			for i := 1; i <= n; i++ {
				if !sc.Scan() || sc.Text() != fmt.Sprintf("recorded %d", i) {
					t.Fatalf("child said %q before record %d (%v)", sc.Text(), i, sc.Err())
				}
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			d, stale, err := Create(root, "killed")
			if err != nil || stale == nil {
				t.Fatalf("Create after the kill: %v, stale %+v", err, stale)
			}
			defer d.Remove()
			if len(stale.Objects) < n {
				t.Fatalf("%d objects in the state after %d reported records: %+v", len(stale.Objects), n, stale.Objects)
			}
			for i, o := range stale.Objects {
				if o.Name != recordChildName(i+1) {
					t.Fatalf("object %d is %q, want %q", i, o.Name, recordChildName(i+1))
				}
			}
		})
	}
}

func recordChildName(i int) string { return fmt.Sprintf("vmrtest%04d", i) }

// TestRecordChild is the child of TestRecordSurvivesSIGKILL: it records
// objects in VM "killed" under $VMRUN_TEST_RECORD_ROOT until it is killed
// (or after 100000). Run directly, it does nothing.
func TestRecordChild(t *testing.T) {
	root := os.Getenv(recordChildEnv)
	if root == "" {
		return
	}
	d, _, err := Create(root, "killed")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100000; i++ {
		if err := d.Record(Object{Kind: "link", Name: recordChildName(i)}); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("recorded %d\n", i)
	}
}

// TestMergeJournal: the journal's records follow the state file's objects,
// each object once; a line a killed vmrun left unfinished is no record.
func TestMergeJournal(t *testing.T) {
	a := Object{Kind: "link", Name: "a"}
	b := Object{Kind: "route", Name: "10.0.0.2/32", Detail: map[string]string{"dev": "a"}}
	c := Object{Kind: "sysctl", Name: "net/ipv4/ip_forward", Old: "0"}
	bInNS := Object{Kind: "route", Name: "10.0.0.2/32", Netns: "/run/netns/x"}
	for _, tc := range []struct {
		name    string
		objs    []Object
		journal string
		want    []Object
	}{
		{"empty", nil, "", nil},
		{"journal only", nil, `{"kind":"link","name":"a"}` + "\n", []Object{a}},
		{"after the state file's", []Object{a}, `{"kind":"route","name":"10.0.0.2/32","detail":{"dev":"a"}}` + "\n", []Object{a, b}},
		{"already folded in", []Object{a, b}, `{"kind":"link","name":"a"}` + "\n" + `{"kind":"route","name":"10.0.0.2/32"}` + "\n", []Object{a, b}},
		{"another namespace is another object", []Object{b}, `{"kind":"route","name":"10.0.0.2/32","netns":"/run/netns/x"}` + "\n", []Object{b, bInNS}},
		{"unfinished last line", []Object{a}, `{"kind":"sysctl","name":"net/ipv4/ip_forward","old":"0"}` + "\n" + `{"kind":"link","na`, []Object{a, c}},
		{"a record after an unfinished line", nil, `{"kind":"link","na` + "\n" + `{"kind":"link","name":"a"}` + "\n", []Object{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeJournal(append([]Object(nil), tc.objs...), []byte(tc.journal))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("mergeJournal = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestJournalFoldedIn: records go to the journal (the state file is not
// rewritten for them); the next write of the state file holds them all
// and the journal is gone; a record after that starts a new journal.
func TestJournalFoldedIn(t *testing.T) {
	d, _, err := Create(t.TempDir(), "vm6")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	if err := d.Update(func(s *State) { s.Name = "vm6" }); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(d.Path, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if err := d.Record(Object{Kind: "link", Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(d.Path, stateFile)); !bytes.Equal(after, before) {
		t.Fatalf("Record rewrote the state file: %s", after)
	}
	if st, err := ReadState(d.Path); err != nil || st.Name != "vm6" || len(st.Objects) != 2 {
		t.Fatalf("state with the journal: %+v, %v", st, err)
	}
	if err := d.Update(func(*State) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Path, journalFile)); !os.IsNotExist(err) {
		t.Fatalf("journal after Update: %v", err)
	}
	if err := d.Record(Object{Kind: "link", Name: "c"}); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(d.Path)
	if err != nil || len(st.Objects) != 3 || st.Objects[2].Name != "c" {
		t.Fatalf("state after Update and a record: %+v, %v", st, err)
	}
}
