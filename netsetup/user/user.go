// Package user is --net user: the guest behind user-mode networking,
// passt when it is installed (see passt_linux.go), else QEMU's slirp.
// Nothing on the host is created but, for passt, its process.
package user

import (
	"fmt"
	"net"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Config is what user mode needs of a plan.
type Config struct {
	VM       string           // the VM's name
	MAC      net.HardwareAddr // the guest NIC's MAC
	Forwards []hostnet.Forward
	// Passt is the passt binary to run; "" means QEMU's slirp.
	Passt string
	// RuntimeRoot is vmrun's runtime root: passt's argv[0] is
	// RuntimeRoot/VM/passt, which is what cleanup matches.
	RuntimeRoot string
}

// Slirp is the attachment of user-mode networking with QEMU's slirp, for
// a guest NIC with MAC mac: one hostfwd option per forward; nothing on the
// host to create.
func Slirp(mac net.HardwareAddr, fws []hostnet.Forward) *hostnet.Attachment {
	return &hostnet.Attachment{
		Backend: "user",
		MAC:     append(net.HardwareAddr(nil), mac...),
		Options: hostfwdOptions(fws),
		Undo:    func() error { return nil },
	}
}

// hostfwdOptions renders forwards as QEMU 7.2 user-mode netdev options:
// hostfwd=tcp:127.0.0.1:8080-:80 (an empty host address binds all).
func hostfwdOptions(fws []hostnet.Forward) []string {
	var opts []string
	for _, f := range fws {
		opts = append(opts, fmt.Sprintf("hostfwd=%s:%s:%d-:%d", f.Proto, f.HostAddr, f.HostPort, f.GuestPort))
	}
	return opts
}

// passtArgs returns passt's arguments after argv[0]: stay in the
// foreground (vmrun supervises it), quiet, talk to QEMU over inherited fd
// 3, and forward the ports. UDP is given explicitly ("none" without UDP
// forwards): passt otherwise forwards the UDP ports matching TCP ones too.
func passtArgs(fws []hostnet.Forward) []string {
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
