package undo

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestUnwindReverseOrderAllRun(t *testing.T) {
	var s Stack
	var got []string
	boom := errors.New("boom")
	s.Push("a", func() error { got = append(got, "a"); return nil })
	s.Push("b", func() error { got = append(got, "b"); return boom })
	s.Push("c", func() error { got = append(got, "c"); return nil })
	err := s.Unwind()
	if want := []string{"c", "b", "a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "undo b: boom") {
		t.Fatalf("err = %v, want it to name step b and wrap boom", err)
	}
	if s.Len() != 0 {
		t.Fatalf("Len after Unwind = %d, want 0", s.Len())
	}
	got = nil
	if err := s.Unwind(); err != nil || len(got) != 0 {
		t.Fatalf("second Unwind ran %v (err %v), want nothing", got, err)
	}
}

func TestTakeAndOnce(t *testing.T) {
	var s Stack
	n := 0
	s.Push("x", func() error { n++; return errors.New("x failed") })
	owned := s.Take()
	if s.Len() != 0 || owned.Len() != 1 {
		t.Fatalf("after Take: s has %d, owned has %d; want 0 and 1", s.Len(), owned.Len())
	}
	if err := s.Unwind(); err != nil || n != 0 {
		t.Fatalf("unwinding the emptied stack ran %d undos (err %v)", n, err)
	}
	once := owned.Once()
	e1, e2 := once(), once()
	if n != 1 || e1 == nil || e1 != e2 {
		t.Fatalf("Once ran %d times, errors %v / %v; want 1 run and the same error twice", n, e1, e2)
	}
}
