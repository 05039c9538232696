package netsetup

import (
	"errors"

	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// Errors returned by this package; test for them with errors.Is. The message
// a user sees is always a full sentence naming the object and the fix; these
// sentinels only classify it. They are hostnet's, so that the mode packages
// return the same values.
var (
	// ErrNotImplemented means the network mode exists in the design but not yet in this build.
	ErrNotImplemented = hostnet.ErrNotImplemented
	// ErrNoInterface means a named interface (or bridge) does not exist.
	ErrNoInterface = hostnet.ErrNoInterface
	// ErrNoUplink means there is no default route and no interface was named.
	ErrNoUplink = hostnet.ErrNoUplink
	// ErrNotBridge means an interface given as a bridge is not a Linux bridge.
	ErrNotBridge = hostnet.ErrNotBridge
	// ErrLinkDown means the interface the guest would attach to is administratively down.
	ErrLinkDown = hostnet.ErrLinkDown
	// ErrUnsuitable means the interface cannot carry the requested mode
	// (a Wi-Fi station for macvtap, a bridge port, a non-Ethernet device).
	ErrUnsuitable = hostnet.ErrUnsuitable
	// ErrNoPrivilege means vmrun lacks a capability the mode's set-up
	// needs (Needs).
	ErrNoPrivilege = hostnet.ErrNoPrivilege
	// ErrNoKernelSupport means the kernel lacks a feature the mode needs (tun, macvtap, ...).
	ErrNoKernelSupport = hostnet.ErrNoKernelSupport
	// ErrBadRequest means the request is inconsistent (flags that contradict each other).
	ErrBadRequest = hostnet.ErrBadRequest
	// ErrForeignLink means a link with vmrun's owned name exists but does not
	// carry vmrun's ownership alias; vmrun never deletes it.
	ErrForeignLink = hostnet.ErrForeignLink
	// ErrVerify means a link was created but the kernel did not apply what was asked.
	ErrVerify = hostnet.ErrVerify
	// ErrUnknownObject means a recorded object has a kind this build cannot undo.
	ErrUnknownObject = hostnet.ErrUnknownObject
	// ErrUnsupported means the platform has no implementation (not Linux).
	ErrUnsupported = hostnet.ErrUnsupported
	// ErrNoAddress means the uplink has no address to route a guest for (routed mode).
	ErrNoAddress = hostnet.ErrNoAddress
	// ErrNoLease means no DHCP server gave a routed guest an address.
	ErrNoLease = hostnet.ErrNoLease
	// ErrNotAllowed means the administrator's ACL does not let an
	// unprivileged vmrun attach guests to the interface.
	ErrNotAllowed = hostnet.ErrNotAllowed
	// ErrUnknownMode is returned by ParseNet for a mode it does not know.
	ErrUnknownMode = hostnet.ErrUnknownMode
	// ErrNoSubnet means every candidate NAT subnet overlaps a prefix in use.
	ErrNoSubnet = hostnet.ErrNoSubnet
	// ErrSubnetFull means every guest address of the NAT subnet is taken.
	ErrSubnetFull = hostnet.ErrSubnetFull
)

// IsRequestError reports whether err refuses the request itself, so that
// the fix is a different command line: options that contradict each other
// or do not apply to the mode (ErrBadRequest), an unknown mode, or an
// interface the request names (or implies) that does not exist, is not a
// bridge, or cannot carry the mode asked for. Everything else a plan can
// fail on is a lack of the host — privileges, kernel support, a default
// route, an address, a link that is down or not vmrun's — and the fix is
// on the host.
func IsRequestError(err error) bool {
	for _, kind := range []error{ErrBadRequest, ErrUnknownMode, ErrNoInterface, ErrNotBridge, ErrUnsuitable} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}
