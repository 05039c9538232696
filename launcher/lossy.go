package launcher

import (
	"io"
	"sync"
)

// lossyWriter is Lossy's writer.
type lossyWriter struct {
	mu     sync.Mutex
	w      io.Writer
	failed func(error)
	err    error
}

// Lossy returns a writer that passes writes on to w until one fails and
// drops them from then on, reporting success: a destination of QEMU's
// output that went away (a closed pipe on vmrun's standard output, a full
// disk under --serial-log) then neither ends the copy of that output nor
// starves the destinations beside it in an io.MultiWriter. failed, when
// not nil, is called once, with the first error.
func Lossy(w io.Writer, failed func(error)) io.Writer {
	return &lossyWriter{w: w, failed: failed}
}

func (l *lossyWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return len(p), nil
	}
	if _, err := l.w.Write(p); err != nil {
		l.err = err
		if l.failed != nil {
			l.failed(err)
		}
	}
	return len(p), nil
}
