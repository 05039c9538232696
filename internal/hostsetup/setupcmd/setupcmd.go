// Package setupcmd is the command line of `vmrun setup` (the one-time
// host set-up that internal/hostsetup carries out), kept out of
// cmd/vmrun.
package setupcmd

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/hostsetup"
	"github.com/vmrun/vmrun/internal/privdrop"
)

// Command is `vmrun setup`: aclPath is the interface allow-list it
// writes, onUsage the CLI's handler of flag errors.
func Command(aclPath string, onUsage cli.OnUsageErrorFunc) *cli.Command {
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
		OnUsageError: onUsage,
		Action:       func(c *cli.Context) error { return action(c, aclPath) },
	}
}

func action(c *cli.Context, aclPath string) error {
	if c.NArg() > 0 {
		return exitcode.Usagef("unexpected argument %q (see `vmrun setup --help`)", c.Args().First())
	}
	if os.Geteuid() != 0 {
		return exitcode.Usagef("vmrun setup changes the system and must run as root: sudo vmrun setup")
	}
	return hostsetup.Setup(c.Context, hostsetup.Options{
		Bin: c.String("bin"), Group: c.String("group"), Allow: c.StringSlice("allow"),
		NoNetworkManager: c.Bool("no-networkmanager"), ACLPath: aclPath, QEMUUser: privdrop.SystemUser,
	}, c.App.Writer, c.App.ErrWriter)
}
