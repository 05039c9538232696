package qga

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestStreamMarkers feeds the port's bytes split at every position: the
// output between the markers comes out whole, nothing of the markers or of
// an earlier command's leftovers leaks, and the exit code is read.
func TestStreamMarkers(t *testing.T) {
	const nonce = "0123abcd"
	body := "line 1\n\x1evmrun-end:ffff:3\npartial \x1evmrun-en" // look-alikes with other nonces stay output
	input := "stale output of an earlier command\n\x1evmrun-begin:0000\n" +
		fmt.Sprintf(beginMark, nonce) + body + fmt.Sprintf(endMark, nonce) + "42\n" + "after the end"
	for split := 0; split <= len(input); split++ {
		var out bytes.Buffer
		s := newStream(&out, nonce)
		_, err1 := s.Write([]byte(input[:split]))
		var err2 error
		if !errors.Is(err1, io.EOF) {
			_, err2 = s.Write([]byte(input[split:]))
		}
		if !errors.Is(err1, io.EOF) && !errors.Is(err2, io.EOF) {
			t.Fatalf("split %d: no end seen (%v, %v)", split, err1, err2)
		}
		if out.String() != body || s.code != 42 {
			t.Fatalf("split %d: got %q code %d, want %q code 42", split, out.String(), s.code, body)
		}
	}
}

// TestStreamFlushesEarly: output is passed on as it comes, holding back
// only what may begin the end marker.
func TestStreamFlushesEarly(t *testing.T) {
	var out bytes.Buffer
	s := newStream(&out, "n1")
	_, _ = s.Write([]byte(fmt.Sprintf(beginMark, "n1") + "first line\n"))
	if out.String() != "first line\n" {
		t.Fatalf("after the first line: %q", out.String())
	}
	_, _ = s.Write([]byte("more\x1evmrun-e"))
	if out.String() != "first line\nmore" {
		t.Fatalf("held back too much or too little: %q", out.String())
	}
}

func TestCopyStreamNoEnd(t *testing.T) {
	var out bytes.Buffer
	s := newStream(&out, "n2")
	err := copyStream(strings.NewReader(fmt.Sprintf(beginMark, "n2")+"cut"), s)
	if !errors.Is(err, ErrNoEnd) {
		t.Fatalf("err %v, want ErrNoEnd", err)
	}
}
