package qga

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The markers the guest-side wrapper writes around a command's output on
// each exec port. NONCE is fresh for every command, so output that an
// earlier command left in the port, or bytes of the command's own output,
// cannot be taken for them.
const (
	beginMark = "\x1evmrun-begin:%s\n"
	endMark   = "\x1evmrun-end:%s:"
)

// ErrNoEnd is returned by a stream that ended before the end marker.
var ErrNoEnd = errors.New("the output stream ended before the command did")

// stream copies one exec port's bytes between the begin and end markers to
// w as they arrive. It holds back only a tail that may be the start of the
// end marker.
type stream struct {
	w      io.Writer
	begin  []byte
	end    []byte
	buf    []byte
	begun  bool
	done   bool
	code   int
	copied int64
}

func newStream(w io.Writer, nonce string) *stream {
	return &stream{
		w:     w,
		begin: []byte(fmt.Sprintf(beginMark, nonce)),
		end:   []byte(fmt.Sprintf(endMark, nonce)),
	}
}

// Write takes the next bytes read from the port. After the end marker and
// its exit code it reports io.EOF.
func (s *stream) Write(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	s.buf = append(s.buf, p...)
	if !s.begun {
		i := bytes.Index(s.buf, s.begin)
		if i < 0 {
			// Keep only what may be the start of the begin marker.
			s.buf = tailPrefix(s.buf, s.begin)
			return len(p), nil
		}
		s.begun = true
		s.buf = s.buf[i+len(s.begin):]
	}
	if i := bytes.Index(s.buf, s.end); i >= 0 {
		if err := s.flush(s.buf[:i]); err != nil {
			return 0, err
		}
		rest := s.buf[i+len(s.end):]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			s.buf = s.buf[i:] // wait for the code and newline
			return len(p), nil
		}
		code, err := strconv.Atoi(string(rest[:nl]))
		if err != nil {
			return 0, fmt.Errorf("bad end marker %q: %w", rest[:nl], err)
		}
		s.code, s.done, s.buf = code, true, nil
		return len(p), io.EOF
	}
	keep := len(tailPrefix(s.buf, s.end))
	if err := s.flush(s.buf[:len(s.buf)-keep]); err != nil {
		return 0, err
	}
	s.buf = append(s.buf[:0], s.buf[len(s.buf)-keep:]...)
	return len(p), nil
}

func (s *stream) flush(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := s.w.Write(b)
	s.copied += int64(n)
	return err
}

// tailPrefix returns the longest suffix of b that is a proper prefix of
// mark.
func tailPrefix(b, mark []byte) []byte {
	n := len(mark) - 1
	if n > len(b) {
		n = len(b)
	}
	for ; n > 0; n-- {
		if bytes.HasPrefix(mark, b[len(b)-n:]) {
			return b[len(b)-n:]
		}
	}
	return b[:0]
}

// copyStream reads r into s until the end marker (nil error) or until r
// fails or ends (ErrNoEnd wrapping the cause).
func copyStream(r io.Reader, s *stream) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				if errors.Is(werr, io.EOF) {
					return nil
				}
				return werr
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNoEnd, err)
		}
	}
}
