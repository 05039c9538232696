package qga

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
)

// NewClient makes a session on conn, a connection to the agent that is
// already open (the supervisor's own session through its agent proxy);
// name says which connection in errors.
func NewClient(conn net.Conn, name string) *Client {
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), path: name}
}

// Interface is one network interface of the guest as its agent reports
// it (guest-network-get-interfaces).
type Interface struct {
	Name  string         `json:"name"`
	MAC   string         `json:"hardware-address"`
	Addrs []netip.Prefix `json:"-"`
}

// Interfaces asks the agent for the guest's network interfaces and their
// addresses.
func (c *Client) Interfaces(ctx context.Context) ([]Interface, error) {
	var out []struct {
		Name  string `json:"name"`
		MAC   string `json:"hardware-address"`
		Addrs []struct {
			Type   string `json:"ip-address-type"`
			Addr   string `json:"ip-address"`
			Prefix int    `json:"prefix"`
		} `json:"ip-addresses"`
	}
	if err := c.call(ctx, "guest-network-get-interfaces", nil, &out); err != nil {
		return nil, err
	}
	ifs := make([]Interface, 0, len(out))
	for _, o := range out {
		ifc := Interface{Name: o.Name, MAC: o.MAC}
		for _, a := range o.Addrs {
			ip, err := netip.ParseAddr(a.Addr)
			if err != nil {
				return nil, fmt.Errorf("guest-network-get-interfaces: %s: %w", o.Name, err)
			}
			p := netip.PrefixFrom(ip.WithZone(""), a.Prefix)
			if !p.IsValid() {
				return nil, fmt.Errorf("guest-network-get-interfaces: %s: prefix /%d of %s", o.Name, a.Prefix, ip)
			}
			ifc.Addrs = append(ifc.Addrs, p)
		}
		ifs = append(ifs, ifc)
	}
	return ifs, nil
}

// Usable returns the addresses of ifs a host can reach the guest on:
// neither loopback nor link-local, nor multicast or unspecified, in the
// agent's order.
func Usable(ifs []Interface) []netip.Addr {
	var addrs []netip.Addr
	for _, ifc := range ifs {
		for _, p := range ifc.Addrs {
			a := p.Addr()
			if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
				continue
			}
			addrs = append(addrs, a)
		}
	}
	return addrs
}
