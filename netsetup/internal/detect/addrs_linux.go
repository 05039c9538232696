package detect

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// globalAddrs lists the global addresses of link index, ADDR/PREFIX.
func globalAddrs(h *netlink.Handle, index int) ([]string, error) {
	l, err := h.LinkByIndex(index)
	if err != nil {
		return nil, fmt.Errorf("link #%d: %w", index, err)
	}
	addrs, err := hostnet.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []string
	for _, a := range addrs {
		if a.IPNet != nil && a.Scope == unix.RT_SCOPE_UNIVERSE {
			out = append(out, a.IPNet.String())
		}
	}
	return out, nil
}
