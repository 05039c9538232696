// Package hostsetup makes the changes `vmrun setup` makes to the host: the
// group whose members may run vmrun, the system user QEMU runs as, the
// installed binary with its file capabilities, the interface allow-list
// and the NetworkManager drop-in. Each change is idempotent.
package hostsetup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// nmDropIn tells NetworkManager to leave vmrun's links alone.
const nmDropIn = `# Installed by vmrun setup: vmrun's links (taps, macvtaps, the NAT bridge
# vmrnat0) are all named vmr*; NetworkManager must not configure them.
[keyfile]
unmanaged-devices+=interface-name:vmr*
`

// EnsureGroup returns the gid of group name, creating a system group if
// there is none.
func EnsureGroup(name string) (gid int, created bool, err error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if !errors.As(err, &unknown) {
			return 0, false, err
		}
		if out, err := exec.Command("groupadd", "--system", name).CombinedOutput(); err != nil {
			return 0, false, fmt.Errorf("groupadd: %w: %s", err, strings.TrimSpace(string(out)))
		}
		if g, err = user.LookupGroup(name); err != nil {
			return 0, false, err
		}
		created = true
	}
	gid, err = strconv.Atoi(g.Gid)
	return gid, created, err
}

// EnsureQEMUUser creates the system user QEMU runs as when root runs
// vmrun outside sudo: its own group, no home, no login shell.
func EnsureQEMUUser(name string) (created bool, err error) {
	if _, err := user.Lookup(name); err == nil {
		return false, nil
	} else if !errors.As(err, new(user.UnknownUserError)) {
		return false, err
	}
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
		"--comment", "QEMU started by vmrun", name).CombinedOutput()
	if msg := strings.TrimSpace(string(out)); err != nil && msg != "" {
		return false, fmt.Errorf("useradd: %w: %s", err, msg)
	} else if err != nil {
		return false, fmt.Errorf("useradd: %w", err)
	}
	return true, nil
}

// InstallBinary copies the running executable to bin: root-owned, group
// gid, 0750, with the file capabilities caps (in its permitted set). The copy is made next to bin and
// renamed over it, so a running vmrun is never overwritten in place.
func InstallBinary(bin string, gid int, caps []int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	tmp := bin + ".vmrun-setup"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// chown clears file capabilities: set them last.
	if err := os.Chown(tmp, 0, gid); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o750); err != nil {
		return err
	}
	if err := setFileCaps(tmp, caps...); err != nil {
		return err
	}
	return os.Rename(tmp, bin)
}

// setFileCaps gives file path the capabilities cs in its permitted set
// (not effective, not inheritable): the "security.capability" extended
// attribute in VFS_CAP_REVISION_2 form, what `setcap cap_...+p` writes.
func setFileCaps(path string, cs ...int) error {
	var permitted uint64
	for _, c := range cs {
		permitted |= 1 << uint(c)
	}
	b := binary.LittleEndian.AppendUint32(nil, vfsCapRevision2)
	b = binary.LittleEndian.AppendUint32(b, uint32(permitted))
	b = binary.LittleEndian.AppendUint32(b, 0) // inheritable
	b = binary.LittleEndian.AppendUint32(b, uint32(permitted>>32))
	b = binary.LittleEndian.AppendUint32(b, 0)
	if err := unix.Setxattr(path, "security.capability", b, 0); err != nil {
		return fmt.Errorf("set file capabilities: %w (the file system must support security xattrs)", err)
	}
	return nil
}

// WriteACL writes a new ACL allowing ifaces; an existing one is kept.
func WriteACL(path string, ifaces []string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	var b strings.Builder
	b.WriteString("# Interfaces members of group vmrun may attach guests to (vmrun without root).\n")
	b.WriteString("# \"allow IFACE\" or \"allow all\"; \"deny IFACE\" wins over any allow. See docs/security.md.\n")
	for _, i := range ifaces {
		fmt.Fprintf(&b, "allow %s\n", i)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	return true, os.WriteFile(path, []byte(b.String()), 0o644)
}

// WriteNMDropIn writes the drop-in when NetworkManager's configuration
// directory nmDir exists, and returns its path ("" when there is none).
func WriteNMDropIn(nmDir string) (string, error) {
	if fi, err := os.Stat(nmDir); err != nil || !fi.IsDir() {
		return "", nil
	}
	p := filepath.Join(nmDir, "conf.d", "90-vmrun.conf")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(nmDropIn), 0o644)
}

// vfsCapRevision2 is VFS_CAP_REVISION_2 (linux/capability.h): 64-bit
// capability sets, no effective bit, no root uid.
const vfsCapRevision2 = 0x02000000
