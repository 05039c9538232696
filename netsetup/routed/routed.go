// Package routed is --net routed: the guest on a plain tap that is on no
// bridge, with its own address on the uplink's LAN (given, or leased
// upstream on its behalf), routed to the tap and answered for on the
// uplink by proxy ARP/NDP (DESIGN.md, "Routed mode").
package routed

// Gateway is vmrun's end of a routed guest's tap (169.254.0.1/32 on the
// tap): the guest's gateway in routed mode, always. GatewayV6 is its IPv6
// link-local twin.
const (
	Gateway   = "169.254.0.1"
	GatewayV6 = "fe80::1"
)
