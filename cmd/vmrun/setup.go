package main

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

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/privdrop"
	"github.com/vmrun/vmrun/netsetup"
)

// nmDropIn tells NetworkManager to leave vmrun's links alone.
const nmDropIn = `# Installed by vmrun setup: vmrun's links (taps, macvtaps, the NAT bridge
# vmrnat0) are all named vmr*; NetworkManager must not configure them.
[keyfile]
unmanaged-devices+=interface-name:vmr*
`

func setupCommand() *cli.Command {
	return &cli.Command{
		Name:  "setup",
		Usage: "one-time, as root: let members of group vmrun attach guests to the LAN without root",
		UsageText: "sudo vmrun setup [--bin PATH] [--group NAME] [--allow IF]... [--no-networkmanager]\n" +
			"   then: sudo usermod -aG vmrun USER",
		Description: `Installs this binary as --bin (mode 0750, group --group) with the file
capabilities CAP_NET_ADMIN, CAP_NET_RAW and CAP_MKNOD in its permitted set
only: vmrun raises them around link set-up and clean-up, and QEMU runs as
the user with no capabilities at all. Creates the group if needed, writes the
interface ACL (` + aclPath + `; kept if it exists) allowing --allow
interfaces (default: the default-route interface and its bridge), a
NetworkManager drop-in that leaves links named vmr* unmanaged, and the
system user ` + privdrop.SystemUser + ` that QEMU runs as when root runs vmrun
outside sudo. Without root, members can then use bridge, macvtap and
routed modes on allowed interfaces (--net auto on a Wi-Fi station routes
the guest); see docs/security.md.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bin", Value: "/usr/local/bin/vmrun", Usage: "install the binary at `PATH`"},
			&cli.StringFlag{Name: "group", Value: "vmrun", Usage: "the `GROUP` whose members may run it"},
			&cli.StringSliceFlag{Name: "allow", Usage: "allow guests on `INTERFACE` in a new ACL (repeatable)"},
			&cli.BoolFlag{Name: "no-networkmanager", Usage: "do not write the NetworkManager drop-in"},
		},
		OnUsageError: usageError,
		Action:       setupAction,
	}
}

func setupAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitcode.Usagef("unexpected argument %q (see `vmrun setup --help`)", c.Args().First())
	}
	if os.Geteuid() != 0 {
		return exitcode.Usagef("vmrun setup changes the system and must run as root: sudo vmrun setup")
	}
	out := c.App.Writer
	gid, created, err := ensureGroup(c.String("group"))
	if err != nil {
		return exitcode.Setupf("group %s: %w", c.String("group"), err)
	}
	if created {
		fmt.Fprintf(out, "created group %s\n", c.String("group"))
	}
	// Not fatal: without it, root's QEMU runs as nobody (docs/security.md);
	// a minimal system (the Wi-Fi rig) may have no useradd.
	created, err = ensureQEMUUser(privdrop.SystemUser)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "vmrun: the system user %s could not be created (%v): until it exists, QEMU runs as nobody when root runs vmrun outside sudo; create it with `useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s`\n", privdrop.SystemUser, oneLine(err.Error()), privdrop.SystemUser)
	}
	if created {
		fmt.Fprintf(out, "created system user %s (QEMU runs as it when root runs vmrun outside sudo)\n", privdrop.SystemUser)
	}
	bin := c.String("bin")
	if err := installBinary(bin, gid); err != nil {
		return exitcode.Setupf("install %s: %w", bin, err)
	}
	fmt.Fprintf(out, "installed %s (root:%s 0750, capabilities %s+p)\n", bin, c.String("group"), fileCapsText())
	allow := c.StringSlice("allow")
	if len(allow) == 0 {
		allow = defaultAllow(c)
	}
	wrote, err := writeACL(aclPath, allow)
	if err != nil {
		return exitcode.Setupf("%w", err)
	}
	if wrote {
		fmt.Fprintf(out, "wrote %s allowing: %s\n", aclPath, strings.Join(allow, ", "))
	} else {
		fmt.Fprintf(out, "kept the existing %s\n", aclPath)
	}
	if !c.Bool("no-networkmanager") {
		if p, err := writeNMDropIn("/etc/NetworkManager"); err != nil {
			return exitcode.Setupf("%w", err)
		} else if p != "" {
			fmt.Fprintf(out, "wrote %s (NetworkManager leaves vmr* links alone; takes effect on its next reload)\n", p)
		}
	}
	fmt.Fprintf(out, "now add users to the group: usermod -aG %s USER (they log in again to get it)\n", c.String("group"))
	return nil
}

// ensureGroup returns the gid of group name, creating a system group if
// there is none.
func ensureGroup(name string) (gid int, created bool, err error) {
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

// ensureQEMUUser creates the system user QEMU runs as when root runs
// vmrun outside sudo: its own group, no home, no login shell.
func ensureQEMUUser(name string) (created bool, err error) {
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

// installBinary copies the running executable to bin: root-owned, group
// gid, 0750, with the file capabilities. The copy is made next to bin and
// renamed over it, so a running vmrun is never overwritten in place.
func installBinary(bin string, gid int) error {
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
	if err := setFileCaps(tmp, setupCaps()...); err != nil {
		return err
	}
	return os.Rename(tmp, bin)
}

// setupCaps are the capabilities setup gives the binary: what
// netsetup.SetupGrants says the unprivileged modes need (bridge, macvtap,
// routed), and nothing else.
func setupCaps() []int {
	var cs []int
	for _, p := range netsetup.SetupGrants() {
		cs = append(cs, p.Number())
	}
	return cs
}

// fileCapsText is setupCaps in setcap's words: "cap_net_admin,cap_net_raw,cap_mknod".
func fileCapsText() string {
	var names []string
	for _, p := range netsetup.SetupGrants() {
		names = append(names, strings.ToLower(string(p)))
	}
	return strings.Join(names, ",")
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

// defaultAllow is the default-route interface, and its bridge when it is
// a bridge port.
func defaultAllow(c *cli.Context) []string {
	// Not Mode None: Detect looks at nothing for a VM without a network.
	f, err := netsetup.Detect(c.Context, netsetup.Request{Mode: netsetup.User})
	if err != nil || f.Uplink == "" {
		return nil
	}
	if f.Master != "" {
		return []string{f.Master, f.Uplink}
	}
	return []string{f.Uplink}
}

// writeACL writes a new ACL allowing ifaces; an existing one is kept.
func writeACL(path string, ifaces []string) (bool, error) {
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

// writeNMDropIn writes the drop-in when NetworkManager's configuration
// directory nmDir exists, and returns its path ("" when there is none).
func writeNMDropIn(nmDir string) (string, error) {
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
