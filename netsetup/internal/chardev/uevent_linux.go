package chardev

import (
	"bytes"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Uevents is a socket on the kernel's uevents (NETLINK_KOBJECT_UEVENT,
// the kernel's group) of the network namespace it was opened in. The
// macvtap and ipvtap classes belong to a namespace, so the uevent of a
// tap's character device goes to the sockets of its link's namespace
// only, where vmrun's private namespace has nothing else: when opened
// there before the link is made, the uevent names its device number
// without a sysfs of the namespace (see TapDevNum).
type Uevents struct{ fd int }

// OpenUevents opens the socket in the calling thread's namespace.
func OpenUevents() (*Uevents, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Uevents{fd: fd}, nil
}

// TapDevNum reads the uevents queued so far (the kernel sends a device's
// before the request that made it returns) for the character device of
// the macvtap or ipvtap link (kind) name with ifindex index; ok is false
// when none of them announced it.
func (u *Uevents) TapDevNum(kind, name string, index int) (dev uint64, ok bool) {
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(u.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return 0, false // EAGAIN: nothing more is queued
		}
		if dev, ok := tapUevent(buf[:n], kind, name, index); ok {
			return dev, true
		}
	}
}

// Close closes the socket.
func (u *Uevents) Close() error { return unix.Close(u.fd) }

// tapUevent parses one kernel uevent ("add@DEVPATH", then KEY=VALUE
// fields, each NUL-terminated): the addition of link name's tap
// character device, tapINDEX of class kind under the link's device.
func tapUevent(msg []byte, kind, name string, index int) (uint64, bool) {
	env := map[string]string{}
	for _, f := range bytes.Split(msg, []byte{0}) {
		if k, v, ok := strings.Cut(string(f), "="); ok {
			env[k] = v
		}
	}
	tap := "tap" + strconv.Itoa(index)
	if env["ACTION"] != "add" || env["SUBSYSTEM"] != kind || env["DEVNAME"] != tap ||
		!strings.HasSuffix(env["DEVPATH"], "/"+name+"/"+kind+"/"+tap) {
		return 0, false
	}
	ma, err1 := strconv.ParseUint(env["MAJOR"], 10, 32)
	mi, err2 := strconv.ParseUint(env["MINOR"], 10, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(ma), uint32(mi)), true
}
