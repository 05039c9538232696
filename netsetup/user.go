package netsetup

import (
	"fmt"
	"net"
	"os"
)

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
	switch p.Mode {
	case User:
		return userAttachment(p)
	case None:
		return noneAttachment()
	}
	a := &Attachment{Backend: "tap", MAC: append(net.HardwareAddr(nil), p.MAC...), MTU: p.MTU,
		LinkName: p.LinkName, Files: make([]*os.File, max(p.Queues, 1)), Undo: func() error { return nil }}
	if p.Vhost {
		a.VhostFiles = make([]*os.File, len(a.Files))
	}
	return a
}
