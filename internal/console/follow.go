package console

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Follow copies the console log in the runtime directory dir to w, then
// keeps copying what is appended to it — woken by inotify, not by polling
// — until the log is removed (the VM stopped and its directory went) or
// ctx ends.
func Follow(ctx context.Context, dir string, w io.Writer) error {
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	events := os.NewFile(uintptr(ifd), "inotify") // non-blocking: reads wait in Go's poller
	defer events.Close()
	// Watch before the first read, so nothing appended between the two is
	// missed.
	if _, err := unix.InotifyAddWatch(ifd, dir, unix.IN_MODIFY|unix.IN_DELETE|unix.IN_DELETE_SELF|unix.IN_MOVED_FROM); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, Log))
	if err != nil {
		return err
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { events.Close() })
	defer stop()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		if _, err := io.Copy(w, f); err != nil {
			return fmt.Errorf("console log: %w", err)
		}
		n, err := events.Read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("inotify: %w", err)
		}
		if gone(buf[:n]) {
			_, err := io.Copy(w, f) // what was written before it went
			return err
		}
	}
}

// gone reports whether the inotify events in b say the console log (or
// its directory) was removed.
func gone(b []byte) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
		end := unix.SizeofInotifyEvent + nameLen
		if end > len(b) {
			return false
		}
		name := string(trimNUL(b[unix.SizeofInotifyEvent:end]))
		if mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0 ||
			mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0 && name == Log {
			return true
		}
		b = b[end:]
	}
	return false
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
