package hostnet

import (
	"fmt"
	"strings"
)

// Forward is one host-port → guest-port forward (--forward).
type Forward struct {
	Proto     string `json:"proto"`     // "tcp" or "udp"
	HostAddr  string `json:"host_addr"` // optional host address to bind, "" for all
	HostPort  int    `json:"host_port"`
	GuestPort int    `json:"guest_port"`
}

// String returns the --forward form.
func (f Forward) String() string {
	if strings.Contains(f.HostAddr, ":") {
		return fmt.Sprintf("%s:[%s]:%d:%d", f.Proto, f.HostAddr, f.HostPort, f.GuestPort)
	}
	if f.HostAddr != "" {
		return fmt.Sprintf("%s:%s:%d:%d", f.Proto, f.HostAddr, f.HostPort, f.GuestPort)
	}
	return fmt.Sprintf("%s:%d:%d", f.Proto, f.HostPort, f.GuestPort)
}
