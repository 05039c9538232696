package hostsetup

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/vmrun/vmrun/internal/exitcode"
)

// Options are `vmrun setup`'s flags, and where its allow-list goes.
type Options struct {
	Bin, Group string
	// Allow are the interfaces of a new ACL; none: DefaultAllow's.
	Allow []string
	// NoNetworkManager: no NetworkManager drop-in.
	NoNetworkManager bool
	// ACLPath is the interface allow-list's file.
	ACLPath string
	// QEMUUser is the system user QEMU runs as when root runs vmrun.
	QEMUUser string
}

// Setup makes every change `vmrun setup` makes, in order, saying each on
// out (and on errOut what it could not do but is not fatal). Its errors
// carry vmrun's exit codes.
func Setup(ctx context.Context, o Options, out, errOut io.Writer) error {
	gid, created, err := EnsureGroup(o.Group)
	if err != nil {
		return exitcode.Setupf("group %s: %w", o.Group, err)
	}
	if created {
		fmt.Fprintf(out, "created group %s\n", o.Group)
	}
	// Not fatal: without it, root's QEMU runs as nobody (docs/security.md);
	// a minimal system (the Wi-Fi rig) may have no useradd.
	created, err = EnsureQEMUUser(o.QEMUUser)
	if err != nil {
		fmt.Fprintf(errOut, "vmrun: the system user %s could not be created (%v): until it exists, QEMU runs as nobody when root runs vmrun outside sudo; create it with `useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s`\n", o.QEMUUser, strings.Join(strings.Fields(err.Error()), " "), o.QEMUUser)
	}
	if created {
		fmt.Fprintf(out, "created system user %s (QEMU runs as it when root runs vmrun outside sudo)\n", o.QEMUUser)
	}
	if err := InstallBinary(o.Bin, gid, Caps()); err != nil {
		return exitcode.Setupf("install %s: %w", o.Bin, err)
	}
	fmt.Fprintf(out, "installed %s (root:%s 0750, capabilities %s+p)\n", o.Bin, o.Group, CapsText())
	if err := allowList(ctx, o, out); err != nil {
		return err
	}
	if !o.NoNetworkManager {
		if p, err := WriteNMDropIn("/etc/NetworkManager"); err != nil {
			return exitcode.Setupf("%w", err)
		} else if p != "" {
			fmt.Fprintf(out, "wrote %s (NetworkManager leaves vmr* links alone; takes effect on its next reload)\n", p)
		}
	}
	fmt.Fprintf(out, "now add users to the group: usermod -aG %s USER (they log in again to get it)\n", o.Group)
	return nil
}

// allowList writes the ACL allowing o.Allow (or the default interfaces)
// unless one exists.
func allowList(ctx context.Context, o Options, out io.Writer) error {
	allow := o.Allow
	if len(allow) == 0 {
		allow = DefaultAllow(ctx)
	}
	wrote, err := WriteACL(o.ACLPath, allow)
	if err != nil {
		return exitcode.Setupf("%w", err)
	}
	if wrote {
		fmt.Fprintf(out, "wrote %s allowing: %s\n", o.ACLPath, strings.Join(allow, ", "))
	} else {
		fmt.Fprintf(out, "kept the existing %s\n", o.ACLPath)
	}
	return nil
}
