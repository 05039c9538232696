// Package linetail keeps the last lines a child process (QEMU, passt, the
// serial console) wrote, for the one-line or few-line reports vmrun prints
// when that process fails.
package linetail

import (
	"strings"
	"sync"
)

// Tail is an io.Writer that keeps the last N complete lines written to it
// (a trailing "\r" removed) and the unfinished last one. It is safe for
// concurrent use.
type Tail struct {
	mu        sync.Mutex
	n         int
	skipBlank bool
	lines     []string
	part      []byte
	any       bool
}

// New keeps the last n lines, blank ones included (a console's layout).
func New(n int) *Tail { return &Tail{n: n} }

// NewSkipBlank keeps the last n non-blank lines, each trimmed of spaces
// (a program's diagnostics).
func NewSkipBlank(n int) *Tail { return &Tail{n: n, skipBlank: true} }

// Write adds p to the tail; it never fails.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.any = t.any || len(p) > 0
	t.part = append(t.part, p...)
	for {
		i := strings.IndexByte(string(t.part), '\n')
		if i < 0 {
			break
		}
		t.addLocked(string(t.part[:i]))
		t.part = t.part[i+1:]
	}
	return len(p), nil
}

// Add adds one whole line.
func (t *Tail) Add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.any = true
	t.addLocked(line)
}

func (t *Tail) addLocked(l string) {
	l = strings.TrimRight(l, "\r")
	if t.skipBlank {
		if l = strings.TrimSpace(l); l == "" {
			return
		}
	}
	t.lines = append(t.lines, l)
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

// Lines returns the kept lines, and the unfinished last one if any.
func (t *Tail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if p := strings.TrimRight(string(t.part), "\r"); p != "" && (!t.skipBlank || strings.TrimSpace(p) != "") {
		if t.skipBlank {
			p = strings.TrimSpace(p)
		}
		out = append(out, p)
	}
	if len(out) > t.n {
		out = out[len(out)-t.n:]
	}
	return out
}

// Last returns the last line (the unfinished one if any), or "".
func (t *Tail) Last() string {
	ls := t.Lines()
	if len(ls) == 0 {
		return ""
	}
	return ls[len(ls)-1]
}

// Any reports whether anything at all was written.
func (t *Tail) Any() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.any
}
