package netsetup

import (
	"fmt"
	"net"
	"os"
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

// passtArgs returns passt's arguments after argv[0]: stay in the
// foreground (vmrun supervises it), quiet, talk to QEMU over inherited fd
// 3, and forward the ports. UDP is given explicitly ("none" without UDP
// forwards): passt otherwise forwards the UDP ports matching TCP ones too.
func passtArgs(fws []Forward) []string {
	args := []string{"--foreground", "--quiet", "--fd", "3"}
	var tcp, udp []string
	for _, f := range fws {
		spec := fmt.Sprintf("%d:%d", f.HostPort, f.GuestPort)
		if f.HostAddr != "" {
			spec = f.HostAddr + "/" + spec
		}
		if f.Proto == "udp" {
			udp = append(udp, spec)
		} else {
			tcp = append(tcp, spec)
		}
	}
	for _, spec := range tcp {
		args = append(args, "--tcp-ports", spec)
	}
	if len(udp) == 0 {
		args = append(args, "--udp-ports", "none")
	}
	for _, spec := range udp {
		args = append(args, "--udp-ports", spec)
	}
	return args
}

// userAttachment is the attachment of user-mode networking: QEMU's slirp
// with one hostfwd option per forward; nothing on the host to create.
func userAttachment(p Plan) *Attachment {
	return &Attachment{
		Backend: "user",
		MAC:     append(net.HardwareAddr(nil), p.MAC...),
		Options: hostfwdOptions(p.Forwards),
		Undo:    func() error { return nil },
	}
}

// noneAttachment is the attachment of --net none.
func noneAttachment() *Attachment {
	return &Attachment{Undo: func() error { return nil }}
}

// hostfwdOptions renders forwards as QEMU 7.2 user-mode netdev options:
// hostfwd=tcp:127.0.0.1:8080-:80 (an empty host address binds all).
func hostfwdOptions(fws []Forward) []string {
	var opts []string
	for _, f := range fws {
		opts = append(opts, fmt.Sprintf("hostfwd=%s:%s:%d-:%d", f.Proto, f.HostAddr, f.HostPort, f.GuestPort))
	}
	return opts
}

// Preview returns the attachment Apply would return for p, creating
// nothing: the fds are nil placeholders (one per queue), for --dry-run.
func Preview(p Plan) *Attachment {
	switch {
	case p.Mode == User && p.Passt != "":
		return &Attachment{Backend: "stream", MAC: append(net.HardwareAddr(nil), p.MAC...),
			Files: make([]*os.File, 1), Undo: func() error { return nil }}
	case p.Mode == User:
		return userAttachment(p)
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
