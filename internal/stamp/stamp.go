// Package stamp prefixes every line written through it with the UTC time:
// --timestamps for the serial log and for the output of a guest command.
package stamp

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// Writer prefixes every line with the UTC time (RFC 3339, ms). It is safe
// for concurrent use.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	mid bool // inside a line
	now func() time.Time
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, now: time.Now}
}

// Write writes p to the underlying writer, with the time before each line
// p starts.
func (s *Writer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	var out []byte
	for len(p) > 0 {
		if !s.mid {
			out = s.now().UTC().AppendFormat(out, "2006-01-02T15:04:05.000Z ")
			s.mid = true
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			out = append(out, p...)
			break
		}
		out = append(out, p[:i+1]...)
		p = p[i+1:]
		s.mid = false
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}
