package console

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Attach connects to the console socket path and copies in to the
// guest's serial input and its output to out, until in carries Escape
// (Ctrl-]) or ends, or the console closes (the VM stopped). When in is a
// terminal it is put in raw mode for the session (keys such as Ctrl-C go
// to the guest) and restored after. detached is true when the user left
// (Escape or the end of in), false when the console closed.
func Attach(path string, in *os.File, out io.Writer) (detached bool, err error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return false, fmt.Errorf("console socket %s: %w", path, err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := hello(r); err != nil {
		return false, err
	}
	if restore, err := makeRaw(in); err == nil {
		defer restore()
	}
	closed := make(chan struct{})
	go func() {
		// Output until the server closes the connection (or we do).
		_, _ = io.Copy(out, r)
		close(closed)
	}()
	left := make(chan error, 1)
	go func() { left <- copyUntilEscape(c, in) }()
	select {
	case err := <-left:
		return true, err
	case <-closed:
		return false, nil
	}
}

// copyUntilEscape copies in to w up to the first Escape or the end of in.
func copyUntilEscape(w io.Writer, in io.Reader) error {
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		b := buf[:n]
		i := bytes.IndexByte(b, Escape)
		if i >= 0 {
			b = b[:i]
		}
		if len(b) > 0 {
			if _, werr := w.Write(b); werr != nil {
				return fmt.Errorf("console: %w", werr)
			}
		}
		if i >= 0 || errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("console input: %w", err)
		}
	}
}

// makeRaw puts the terminal f in raw mode (as cfmakeraw(3)) and returns
// the function that restores it; an error when f is not a terminal.
func makeRaw(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
