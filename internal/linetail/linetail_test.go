package linetail

import (
	"reflect"
	"testing"
)

func TestKeepsLastLines(t *testing.T) {
	tl := New(3)
	for _, s := range []string{"one\r\ntwo\n", "\nthr", "ee\nfour\nfi"} {
		tl.Write([]byte(s))
	}
	if got, want := tl.Lines(), []string{"three", "four", "fi"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Lines = %q, want %q", got, want)
	}
	if tl.Last() != "fi" || !tl.Any() {
		t.Fatalf("Last = %q, Any = %v", tl.Last(), tl.Any())
	}
}

func TestSkipBlank(t *testing.T) {
	tl := NewSkipBlank(2)
	tl.Write([]byte("  a  \n\n   \nb\n"))
	tl.Add("c")
	tl.Add("   ")
	if got, want := tl.Lines(), []string{"b", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Lines = %q, want %q", got, want)
	}
	if New(1).Any() {
		t.Fatal("an empty tail says something was written")
	}
}

// TestConsoleTail is the serial console's use (moved from cmd/vmrun):
// nothing seen before a write, "\r\n" ends a line, the unfinished last
// line counts.
func TestConsoleTail(t *testing.T) {
	tl := New(3)
	if tl.Any() {
		t.Fatal("seen before any write")
	}
	_, _ = tl.Write([]byte("1\n2\r\n3\n4\n5"))
	if got := tl.Lines(); !reflect.DeepEqual(got, []string{"3", "4", "5"}) {
		t.Fatalf("got %q", got)
	}
}
