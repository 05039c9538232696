// Package undo keeps what a sequence of steps must undo, and undoes it in
// reverse order. It is the one undo stack of a run: the CLI's session and
// netsetup's set-up steps both push onto a Stack right after each step
// succeeds, so a failure at any point unwinds exactly what was done.
package undo

import (
	"errors"
	"fmt"
	"sync"
)

// Stack is a last-in, first-out list of named undos. The zero value is
// ready to use; it is safe for concurrent use.
type Stack struct {
	mu      sync.Mutex
	entries []entry
}

type entry struct {
	name string
	fn   func() error
}

// Push registers fn, the undo of the step name just done.
func (s *Stack) Push(name string, fn func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = append(s.entries, entry{name, fn})
}

// Len is the number of undos not yet run.
func (s *Stack) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Unwind runs every registered undo in reverse order, even after one
// fails, and forgets them: a second Unwind runs only what was pushed
// since. The errors are joined, each prefixed with its step's name.
func (s *Stack) Unwind() error {
	s.mu.Lock()
	es := s.entries
	s.entries = nil
	s.mu.Unlock()
	var errs []error
	for i := len(es) - 1; i >= 0; i-- {
		if err := es[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("undo %s: %w", es[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// Take moves every registered undo to a new Stack and leaves s empty: the
// set-up hands what it did to the value that now owns it.
func (s *Stack) Take() *Stack {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &Stack{entries: s.entries}
	s.entries = nil
	return t
}

// Once returns a function that unwinds s the first time it is called and
// returns that first result on every later call.
func (s *Stack) Once() func() error { return sync.OnceValue(s.Unwind) }
