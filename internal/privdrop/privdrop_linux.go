package privdrop

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Credential is what exec.Cmd's SysProcAttr needs to start a process as u
// (with exactly u's supplementary groups).
func (u User) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: append([]uint32{}, u.Groups...)}
}

// Open opens path with the file-system rights of u, not of the caller:
// the open runs on a throwaway OS thread whose file-system uid, gid and
// groups are u's. A root caller's CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
// leave that thread's effective set as soon as its fsuid is not 0, so
// the kernel checks u's permissions, directories of the path included.
func (u User) Open(path string, flag int) (*os.File, error) {
	var f *os.File
	err := u.do(func() error {
		var err error
		f, err = os.OpenFile(path, flag, 0)
		return err
	})
	return f, err
}

// Access checks with u's rights (the kernel's, ACLs included) that path
// allows mode (unix.R_OK, W_OK, X_OK, or'd).
func (u User) Access(path string, mode uint32) error {
	return u.do(func() error {
		// AT_EACCESS: check with the thread's own ids (the fsuid set
		// above), not the real uid, which is root's.
		if err := unix.Faccessat(unix.AT_FDCWD, path, mode, unix.AT_EACCESS); err != nil {
			return &os.PathError{Op: "access", Path: path, Err: err}
		}
		return nil
	})
}

// Reopen checks that u could open f's file for reading through
// /proc/self/fd (as QEMU opens a file vmrun passed by fd): the kernel then
// checks the file itself with u's rights, not the directories of its path.
func (u User) Reopen(f *os.File) error {
	return u.do(func() error {
		g, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
		if err != nil {
			return err
		}
		return g.Close()
	})
}

// do runs fn on a locked thread with u's file-system identity. The thread
// is never unlocked: it ends with the goroutine, changed ids and all, and
// is never reused for other work.
func (u User) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := u.enterFS(); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// enterFS sets the calling thread's supplementary groups, fsgid and fsuid
// to u's. Raw system calls: the syscall package's Setgroups changes every
// thread of the process.
func (u User) enterFS() error {
	var p unsafe.Pointer
	if len(u.Groups) > 0 {
		p = unsafe.Pointer(&u.Groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(u.Groups)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups for %s: %w", u, e)
	}
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(u.GID), 0, 0)
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(u.UID), 0, 0)
	// setfsuid and setfsgid report no errors: an invalid id returns the
	// current one, so read both back.
	g, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0)
	id, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0)
	if uint32(id) != u.UID || uint32(g) != u.GID {
		return fmt.Errorf("could not take the file-system identity of %s (fsuid %d, fsgid %d)", u, uint32(id), uint32(g))
	}
	return nil
}

// Confine strips the calling thread of what a child it starts could
// inherit: no_new_privs (no set-uid bit or file capability of a binary
// ever adds a privilege), empty inheritable and ambient sets, and, with
// bounding (which needs CAP_SETPCAP, i.e. root), an empty bounding set.
// All of these are per thread: the caller must hold runtime.LockOSThread
// and never unlock it, so that the thread dies when its goroutine ends.
func Confine(bounding bool) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if err := unix.Capget(&hdr, &d[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if d[0].Inheritable != 0 || d[1].Inheritable != 0 {
		d[0].Inheritable, d[1].Inheritable = 0, 0
		if err := unix.Capset(&hdr, &d[0]); err != nil {
			return fmt.Errorf("clear the inheritable capabilities: %w", err)
		}
	}
	if !bounding {
		return nil
	}
	// Drop every capability the kernel knows; it answers EINVAL past the last.
	for c := 0; c < 64; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}
