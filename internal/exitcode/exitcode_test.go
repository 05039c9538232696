package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

// TestOf: every way an error carries (or does not carry) an exit code.
func TestOf(t *testing.T) {
	plain := errors.New("boom")
	cases := []struct {
		name string
		err  error
		code int
	}{
		{"nil", nil, OK},
		{"plain error", plain, Setup},
		{"Usagef", Usagef("bad %s", "flag"), Usage},
		{"Setupf", Setupf("no %s", "tun"), Setup},
		{"Wrap QEMUDied", Wrap(QEMUDied, plain), QEMUDied},
		{"Wrap GuestPanic", Wrap(GuestPanic, plain), GuestPanic},
		{"Wrap Timeout", Wrap(Timeout, plain), Timeout},
		{"Wrap OK", Wrap(OK, plain), OK},
		{"wrapped with %w", fmt.Errorf("run: %w", Usagef("bad")), Usage},
		{"joined, first coded wins", errors.Join(plain, Wrap(Timeout, plain), Usagef("x")), Timeout},
		{"innermost code is shadowed by the outer one", Wrap(Setup, Usagef("inner")), Setup},
	}
	for _, c := range cases {
		if got := Of(c.err); got != c.code {
			t.Errorf("%s: Of = %d, want %d", c.name, got, c.code)
		}
	}
}

func TestWrap(t *testing.T) {
	if Wrap(Setup, nil) != nil {
		t.Fatal("Wrap(code, nil) is not nil")
	}
	base := errors.New("base")
	err := Wrap(QEMUDied, base)
	if !errors.Is(err, base) || err.Error() != "base" {
		t.Fatalf("Wrap hides its error: %v", err)
	}
	if err := Usagef("--mem %q: %w", "x", base); !errors.Is(err, base) || err.Error() != `--mem "x": base` {
		t.Fatalf("Usagef: %v", err)
	}
}

// TestDescribe: every documented code has its sentence, nothing else has one.
func TestDescribe(t *testing.T) {
	want := []int{0, 1, 2, 3, 4, 124}
	if fmt.Sprint(All) != fmt.Sprint(want) {
		t.Fatalf("All = %v, want the documented %v", All, want)
	}
	seen := map[string]bool{}
	for _, c := range All {
		d := Describe(c)
		if d == "unknown" || d == "" || seen[d] {
			t.Errorf("code %d: description %q", c, d)
		}
		seen[d] = true
	}
	for _, c := range []int{-1, 5, 125, 255} {
		if Describe(c) != "unknown" {
			t.Errorf("undocumented code %d described as %q", c, Describe(c))
		}
	}
}

func TestPassIsSilent(t *testing.T) {
	if Pass(OK) != nil {
		t.Fatal("Pass(OK) is not nil")
	}
	err := Pass(3)
	if Of(err) != 3 || !errors.Is(err, ErrSilent) {
		t.Fatalf("Pass(3): code %d, silent %v", Of(err), errors.Is(err, ErrSilent))
	}
	if errors.Is(Setupf("x"), ErrSilent) {
		t.Fatal("a set-up error is silent")
	}
}
