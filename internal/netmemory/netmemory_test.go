package netmemory

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRememberLookupForget(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	t.Setenv(EnvDir, dir)
	if _, ok, err := Lookup("gateway 52:54:00:00:00:01"); ok || err != nil {
		t.Fatalf("Lookup in no file: %v, %v", ok, err)
	}
	when := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	o := Outcome{Mode: "routed", From: "macvtap", Why: "no DHCP answer for the guest in 10 s", When: when}
	for _, k := range []string{"gateway 52:54:00:00:00:01", "gateway 52:54:00:00:00:02"} {
		if err := Remember(k, o); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := Lookup("gateway 52:54:00:00:00:01")
	if !ok || err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("Lookup = %+v, %v, %v; want %+v", got, ok, err, o)
	}
	if s := got.String(); !strings.HasPrefix(s, "routed (macvtap got no DHCP answer on 2026-12-0") {
		t.Errorf("String() = %q", s)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatalf("the file is not in %s: %v", dir, err)
	}
	gone, err := Forget("gateway 52:54:00:00:00:01")
	if err != nil || !reflect.DeepEqual(gone, []string{"gateway 52:54:00:00:00:01"}) {
		t.Fatalf("Forget one = %v, %v", gone, err)
	}
	if _, ok, _ := Lookup("gateway 52:54:00:00:00:01"); ok {
		t.Fatal("still remembered after Forget")
	}
	gone, err = Forget()
	if err != nil || !reflect.DeepEqual(gone, []string{"gateway 52:54:00:00:00:02"}) {
		t.Fatalf("Forget all = %v, %v", gone, err)
	}
	if _, ok, _ := Lookup("gateway 52:54:00:00:00:02"); ok {
		t.Fatal("still remembered after forgetting all")
	}
}

func TestEmptyKeyIsNoNetwork(t *testing.T) {
	t.Setenv(EnvDir, t.TempDir())
	if err := Remember("", Outcome{Mode: "routed"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := Lookup(""); ok {
		t.Fatal("an empty key was remembered")
	}
}

func TestDir(t *testing.T) {
	t.Setenv(EnvDir, "")
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if d := Dir(); d != "/x/state/vmrun" {
		t.Fatalf("Dir with XDG_STATE_HOME = %s", d)
	}
}
