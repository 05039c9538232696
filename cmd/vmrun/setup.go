package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/hostsetup"
	"github.com/vmrun/vmrun/internal/privdrop"
)

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
	gid, created, err := hostsetup.EnsureGroup(c.String("group"))
	if err != nil {
		return exitcode.Setupf("group %s: %w", c.String("group"), err)
	}
	if created {
		fmt.Fprintf(out, "created group %s\n", c.String("group"))
	}
	// Not fatal: without it, root's QEMU runs as nobody (docs/security.md);
	// a minimal system (the Wi-Fi rig) may have no useradd.
	created, err = hostsetup.EnsureQEMUUser(privdrop.SystemUser)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "vmrun: the system user %s could not be created (%v): until it exists, QEMU runs as nobody when root runs vmrun outside sudo; create it with `useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s`\n", privdrop.SystemUser, oneLine(err.Error()), privdrop.SystemUser)
	}
	if created {
		fmt.Fprintf(out, "created system user %s (QEMU runs as it when root runs vmrun outside sudo)\n", privdrop.SystemUser)
	}
	bin := c.String("bin")
	if err := hostsetup.InstallBinary(bin, gid, hostsetup.Caps()); err != nil {
		return exitcode.Setupf("install %s: %w", bin, err)
	}
	fmt.Fprintf(out, "installed %s (root:%s 0750, capabilities %s+p)\n", bin, c.String("group"), hostsetup.CapsText())
	allow := c.StringSlice("allow")
	if len(allow) == 0 {
		allow = hostsetup.DefaultAllow(c.Context)
	}
	wrote, err := hostsetup.WriteACL(aclPath, allow)
	if err != nil {
		return exitcode.Setupf("%w", err)
	}
	if wrote {
		fmt.Fprintf(out, "wrote %s allowing: %s\n", aclPath, strings.Join(allow, ", "))
	} else {
		fmt.Fprintf(out, "kept the existing %s\n", aclPath)
	}
	if !c.Bool("no-networkmanager") {
		if p, err := hostsetup.WriteNMDropIn("/etc/NetworkManager"); err != nil {
			return exitcode.Setupf("%w", err)
		} else if p != "" {
			fmt.Fprintf(out, "wrote %s (NetworkManager leaves vmr* links alone; takes effect on its next reload)\n", p)
		}
	}
	fmt.Fprintf(out, "now add users to the group: usermod -aG %s USER (they log in again to get it)\n", c.String("group"))
	return nil
}
