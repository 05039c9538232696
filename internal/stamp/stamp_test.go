package stamp

import (
	"bytes"
	"testing"
	"time"
)

func TestWriter(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	w.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC) }
	for _, p := range []string{"a", "b\nc\n", "", "d\n\n"} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	ts := "2026-01-02T03:04:05.006Z "
	want := ts + "ab\n" + ts + "c\n" + ts + "d\n" + ts + "\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}
