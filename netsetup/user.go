package netsetup

import (
	"net"
	"os"

	"github.com/vmrun/vmrun/netsetup/user"
)

// passtUsable reports whether user mode can use passt on this host: it is
// installed, and there is a default route (passt takes the guest's address,
// gateway and DNS from the default-route interface, and refuses to start
// without one).
func passtUsable(f Facts) bool { return f.Caps.Passt != "" && f.Route != nil }

// userBackend picks the user-mode backend: passt when usable, else QEMU's
// slirp, adding a one-line reason to notice (the plan's notice so far).
func userBackend(f Facts, notice string) (passt, newNotice string) {
	if passtUsable(f) {
		return f.Caps.Passt, notice
	}
	note := "passt is not installed: using QEMU's built-in user networking (slirp: the guest sits behind QEMU's NAT, at 10.0.2.15 and in fec0::/64, and --forward binds IPv4 host addresses only); install passt (apt-get install passt) to give the guest this host's own addresses"
	if f.Caps.Passt != "" {
		note = "using QEMU's built-in user networking (slirp): passt needs a default route, and there is none"
	}
	if notice == "" {
		return "", note
	}
	return "", notice + " (" + note + ")"
}

// noneAttachment is the attachment of --net none.
func noneAttachment() *Attachment {
	return &Attachment{Undo: func() error { return nil }}
}

// Preview returns the attachment Apply would return for p, creating
// nothing: the fds are nil placeholders (one per queue), for --dry-run.
func Preview(p Plan) *Attachment {
	switch {
	case p.Mode == User && p.Passt != "":
		return &Attachment{Backend: "stream", MAC: append(net.HardwareAddr(nil), p.MAC...),
			Files: make([]*os.File, 1), Undo: func() error { return nil }}
	case p.Mode == User:
		return user.Slirp(p.MAC, p.Forwards)
	case p.Mode == None:
		return noneAttachment()
	}
	a := &Attachment{Backend: "tap", MAC: append(net.HardwareAddr(nil), p.MAC...), MTU: p.MTU,
		LinkName: p.LinkName, Files: make([]*os.File, max(p.Queues, 1)), Undo: func() error { return nil }}
	if p.Vhost {
		a.VhostFiles = make([]*os.File, len(a.Files))
	}
	return a
}
