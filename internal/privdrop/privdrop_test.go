package privdrop

import (
	"errors"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestChoose(t *testing.T) {
	u, err := Choose(env(map[string]string{"SUDO_UID": "4242", "SUDO_GID": "4343"}))
	if err != nil || u.UID != 4242 || u.GID != 4343 || u.From != FromSudo {
		t.Fatalf("sudo: %+v, %v", u, err)
	}
	if _, err := Choose(env(map[string]string{"SUDO_UID": "alice", "SUDO_GID": "1"})); !errors.Is(err, ErrBadSudo) {
		t.Fatalf("bad SUDO_UID: %v", err)
	}
	// sudo from root, or no sudo: the system user, else nobody.
	for _, e := range []map[string]string{{"SUDO_UID": "0", "SUDO_GID": "0"}, {}} {
		u, err := Choose(env(e))
		if err != nil || u.UID == 0 || u.GID == 0 || (u.From != FromSystem && u.From != FromNobody) {
			t.Fatalf("%v: %+v, %v", e, u, err)
		}
		if u.From == FromNobody && (u.UID != Nobody || u.GID != Nobody) {
			t.Fatalf("fallback: %+v", u)
		}
	}
}

func TestWithGroup(t *testing.T) {
	u := User{UID: 1, GID: 10, Groups: []uint32{20}}
	if g := u.WithGroup(10).Groups; len(g) != 1 {
		t.Fatalf("primary group added again: %v", g)
	}
	if g := u.WithGroup(20).Groups; len(g) != 1 {
		t.Fatalf("group added twice: %v", g)
	}
	if g := u.WithGroup(30).Groups; len(g) != 2 || g[1] != 30 || len(u.Groups) != 1 {
		t.Fatalf("WithGroup(30): %v (original %v)", g, u.Groups)
	}
}
