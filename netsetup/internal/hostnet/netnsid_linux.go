package hostnet

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14), missing from x/sys/unix.
const soNetnsCookie = 71

// NetnsID names the calling thread's network namespace: "c" and its
// cookie, never reused while the host runs; on kernels without cookies,
// "i" and the inode of its nsfs file, which a later namespace may reuse.
func NetnsID() (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("network namespace id: %w", err)
	}
	defer unix.Close(fd)
	if c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie); err == nil {
		return "c" + strconv.FormatUint(c, 10), nil
	}
	ino, err := NetnsInode("/proc/thread-self/ns/net")
	if err != nil {
		return "", fmt.Errorf("network namespace id: %w", err)
	}
	return "i" + strconv.FormatUint(ino, 10), nil
}

// NetnsInode returns the inode of the network namespace file at path
// (/proc/PID/ns/net, or a bind mount of one): what `ls -l` shows as
// net:[INODE].
func NetnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// FindNetns looks for the network namespace named id (NetnsID's form)
// whose nsfs inode is ino, among the namespaces mounted somewhere (`ip
// netns add` mounts them under /run/netns) and those of running processes,
// and returns a path to it. A candidate with that inode that cannot be
// entered to compare ids counts as found (the inode alone may be a later
// namespace's). found is false when no mount or process holds it: the
// namespace is gone, and the links, addresses, routes and sysctls in it
// with it.
func FindNetns(id string, ino uint64) (path string, found bool) {
	for _, p := range netnsCandidates() {
		if got, err := NetnsInode(p); err != nil || got != ino {
			continue
		}
		var same bool
		err := InNetns(p, func() error {
			got, err := NetnsID()
			same = got == id
			return err
		})
		if err != nil || same {
			return p, true
		}
	}
	return "", false
}

// netnsCandidates lists paths to network namespaces: the nsfs mounts of
// network namespaces first, then one /proc/PID/ns/net per process.
func netnsCandidates() []string {
	var paths []string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE SOURCE ...
			fields := strings.Fields(sc.Text())
			sep := -1
			for i, f := range fields {
				if f == "-" {
					sep = i
					break
				}
			}
			if sep > 4 && sep+1 < len(fields) && fields[sep+1] == "nsfs" && strings.HasPrefix(fields[3], "net:[") {
				paths = append(paths, unescapeMountPath(fields[4]))
			}
		}
		f.Close()
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	return append(paths, procs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
