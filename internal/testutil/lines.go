package testutil

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// LineBuffer collects output written by a process and lets tests wait for
// a line matching a pattern.
type LineBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	cond chan struct{} // closed and replaced on each write
}

// NewLineBuffer returns an empty buffer.
func NewLineBuffer() *LineBuffer { return &LineBuffer{cond: make(chan struct{})} }

// Write appends p.
func (b *LineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.cond)
	b.cond = make(chan struct{})
	return len(p), nil
}

// String returns everything written so far.
func (b *LineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor waits until the complete lines of the output (up to the last
// newline: a line still being written never matches) match the regular
// expression, and returns the submatches of the first match.
func (b *LineBuffer) WaitFor(pattern string, timeout time.Duration) ([]string, error) {
	re := regexp.MustCompile(pattern)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		out := b.buf.String()
		m := re.FindStringSubmatch(out[:strings.LastIndexByte(out, '\n')+1])
		wake := b.cond
		b.mu.Unlock()
		if m != nil {
			return m, nil
		}
		select {
		case <-wake:
		case <-deadline.C:
			return nil, fmt.Errorf("no output matching %q within %s", pattern, timeout)
		}
	}
}
