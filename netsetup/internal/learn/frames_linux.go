package learn

import (
	"errors"
	"os"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// ReadFrames reads frames from conn into buf and hands each to handle,
// until stop is closed (it returns nil; wake a blocked read with a past
// read deadline or by closing conn) or a read fails for good (it returns
// that error). A read deadline, an interrupted read, a full receive queue
// (ENOBUFS: frames were lost) and a link that went down for a moment
// (ENETDOWN, reported once) are not failures.
func ReadFrames(conn *packet.Conn, buf []byte, stop <-chan struct{}, handle func(frame []byte)) error {
	for {
		n, _, err := conn.ReadFrom(buf)
		select {
		case <-stop:
			return nil
		default:
		}
		switch {
		case err == nil:
			handle(buf[:n])
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, unix.EINTR),
			errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENETDOWN):
		default:
			return err
		}
	}
}
