package netsetup

import (
	"crypto/sha256"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// DeriveMAC returns the VM's default MAC: QEMU's locally administered
// 52:54:00 prefix followed by three bytes of SHA-256 of the VM name, so a VM
// keeps its MAC (and its DHCP lease) across runs.
func DeriveMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("vmrun-mac:" + name))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}

// ParseMAC parses a guest MAC given by the user and rejects the ones a NIC
// cannot use: not 6 bytes, multicast/broadcast, or all zeros.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("MAC address %q is not valid; write six hex bytes, e.g. 52:54:00:12:34:56", s)
	}
	if mac[0]&1 == 1 {
		return nil, fmt.Errorf("MAC address %q is a multicast address (lowest bit of the first byte set); use a unicast one, e.g. 52:54:00:12:34:56", s)
	}
	if mac.String() == "00:00:00:00:00:00" {
		return nil, fmt.Errorf("MAC address %q is all zeros; use e.g. 52:54:00:12:34:56", s)
	}
	return mac, nil
}

// Forward is one host-port → guest-port forward (--forward).
type Forward = hostnet.Forward

// CheckForwardMode refuses --forward with mode m when there are forwards:
// only user-mode networking and NAT forward host ports (auto then picks
// one of them); with the other modes the guest has its own address. The
// one check of this rule, for the CLI's options and for Decide.
func CheckForwardMode(m Mode, fws []Forward) error {
	if len(fws) == 0 {
		return nil
	}
	switch m {
	case Auto, User, NAT:
		return nil
	case None:
		return hostnet.Refuse(ErrBadRequest, "--forward needs a network, but --net none gives the guest none; drop --forward, or use --net user or nat")
	}
	return hostnet.Refuse(ErrBadRequest, "--forward works only with --net user, nat or auto: with --net %s the guest has its own address on the network; connect to it directly", m)
}

// ParseForward parses PROTO:HOSTPORT:GUESTPORT or
// PROTO:HOSTADDR:HOSTPORT:GUESTPORT; an IPv6 HOSTADDR is bracketed
// (tcp:[::1]:8080:80).
func ParseForward(s string) (Forward, error) {
	bad := func(why string) (Forward, error) {
		return Forward{}, fmt.Errorf("--forward %q: %s; write tcp:HOSTPORT:GUESTPORT, e.g. tcp:2222:22", s, why)
	}
	parts := strings.Split(s, ":")
	if proto, rest, _ := strings.Cut(s, ":"); strings.HasPrefix(rest, "[") {
		addr, ports, ok := strings.Cut(rest[1:], "]:")
		if !ok || net.ParseIP(addr) == nil || strings.Contains(addr, ".") {
			return bad(fmt.Sprintf("%q is not a bracketed IPv6 address", rest))
		}
		parts = append([]string{proto, addr}, strings.Split(ports, ":")...)
	}
	var f Forward
	switch len(parts) {
	case 3:
	case 4:
		if net.ParseIP(parts[1]) == nil {
			return bad(fmt.Sprintf("%q is not an IP address", parts[1]))
		}
		f.HostAddr = parts[1]
		parts = []string{parts[0], parts[2], parts[3]}
	default:
		return bad("wrong number of fields")
	}
	f.Proto = strings.ToLower(parts[0])
	if f.Proto != "tcp" && f.Proto != "udp" {
		return bad(fmt.Sprintf("protocol %q is neither tcp nor udp", parts[0]))
	}
	var err error
	if f.HostPort, err = port(parts[1]); err != nil {
		return bad("host port " + err.Error())
	}
	if f.GuestPort, err = port(parts[2]); err != nil {
		return bad("guest port " + err.Error())
	}
	return f, nil
}

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}
