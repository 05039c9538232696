// Package netsetup finds the host's uplink, decides how the guest should
// reach the network (pure planning over detected facts), and creates what
// that decision needs through the mode's package (tap, routed, ipvtap,
// user, nat); the Attachment it returns removes it again. After a crash,
// package gc removes it from the objects recorded in the VM's state file.
package netsetup

import (
	"fmt"
	"strings"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Mode is a network attachment mode.
type Mode string

// The network modes; see DESIGN.md "Network modes".
const (
	Auto    Mode = "auto"
	None    Mode = "none"
	User    Mode = "user"
	Bridge  Mode = "bridge"
	Macvtap Mode = "macvtap"
	IPVtap  Mode = "ipvtap"
	Routed  Mode = "routed"
	NAT     Mode = "nat"
)

// UsesTap reports whether the mode hands QEMU tap queue fds (tap, macvtap
// or ipvtap), and so can use vhost-net.
func (m Mode) UsesTap() bool {
	switch m {
	case Bridge, Macvtap, IPVtap, Routed, NAT:
		return true
	}
	return false
}

// Modes lists every mode, in the order --help shows them.
func Modes() []Mode { return []Mode{Auto, Bridge, Macvtap, IPVtap, Routed, NAT, User, None} }

// ParseNet parses --net MODE[:PARENT].
func ParseNet(s string) (Mode, string, error) {
	m, parent, _ := strings.Cut(strings.TrimSpace(s), ":")
	mode := Mode(strings.ToLower(m))
	for _, k := range Modes() {
		if k == mode {
			switch mode {
			case Auto, User, None, NAT:
				if parent != "" {
					return "", "", fmt.Errorf("--net %s takes no interface (got %q); use --uplink to choose the uplink", mode, s)
				}
			}
			if strings.Contains(parent, "/") || len(parent) > 15 {
				return "", "", fmt.Errorf("--net %q: %q is not a valid interface name", s, parent)
			}
			return mode, parent, nil
		}
	}
	names := make([]string, 0, len(Modes()))
	for _, k := range Modes() {
		names = append(names, string(k))
	}
	return "", "", fmt.Errorf("%w %q: use one of %s (optionally MODE:INTERFACE)", ErrUnknownMode, m, strings.Join(names, ", "))
}

// Recorder persists each host object before it is created (see rundir.Dir).
type Recorder = hostnet.Recorder

// Attachment is an applied network plan: what QEMU needs, and how to undo it.
type Attachment = hostnet.Attachment
