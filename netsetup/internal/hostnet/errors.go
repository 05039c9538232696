// Package hostnet is the lower layer every network mode of netsetup builds
// on: the errors, the recorded objects, the step runner with its undo
// stack, netlink and namespace helpers, owned links, taps and character
// devices, and the one home of recorded sysctls. It imports no mode.
package hostnet

import (
	"errors"
	"fmt"
)

// Errors returned by this package; test for them with errors.Is. The message
// a user sees is always a full sentence naming the object and the fix; these
// sentinels only classify it.
var (
	// ErrNotImplemented means the network mode exists in the design but not yet in this build.
	ErrNotImplemented = errors.New("network mode not implemented yet")
	// ErrNoInterface means a named interface (or bridge) does not exist.
	ErrNoInterface = errors.New("interface does not exist")
	// ErrNoUplink means there is no default route and no interface was named.
	ErrNoUplink = errors.New("no uplink interface")
	// ErrNotBridge means an interface given as a bridge is not a Linux bridge.
	ErrNotBridge = errors.New("not a bridge")
	// ErrLinkDown means the interface the guest would attach to is administratively down.
	ErrLinkDown = errors.New("interface is down")
	// ErrUnsuitable means the interface cannot carry the requested mode
	// (a Wi-Fi station for macvtap, a bridge port, a non-Ethernet device).
	ErrUnsuitable = errors.New("interface unsuitable for this mode")
	// ErrNoPrivilege means vmrun lacks a capability the mode's set-up
	// needs (Needs).
	ErrNoPrivilege = errors.New("missing capability")
	// ErrNoKernelSupport means the kernel lacks a feature the mode needs (tun, macvtap, ...).
	ErrNoKernelSupport = errors.New("kernel lacks support")
	// ErrBadRequest means the request is inconsistent (flags that contradict each other).
	ErrBadRequest = errors.New("invalid network request")
	// ErrForeignLink means a link with vmrun's owned name exists but does not
	// carry vmrun's ownership alias; vmrun never deletes it.
	ErrForeignLink = errors.New("link exists and is not vmrun's")
	// ErrVerify means a link was created but the kernel did not apply what was asked.
	ErrVerify = errors.New("link not as requested")
	// ErrUnknownObject means a recorded object has a kind this build cannot undo.
	ErrUnknownObject = errors.New("unknown recorded object kind")
	// ErrUnsupported means the platform has no implementation (not Linux).
	ErrUnsupported = errors.New("network set-up is only supported on Linux")
	// ErrNoAddress means the uplink has no address to route a guest for (routed mode).
	ErrNoAddress = errors.New("interface has no address")
	// ErrNoLease means no DHCP server gave a routed guest an address.
	ErrNoLease = errors.New("no address for the guest")
	// ErrNotAllowed means the administrator's ACL does not let an
	// unprivileged vmrun attach guests to the interface.
	ErrNotAllowed = errors.New("interface not allowed")
	// ErrUnknownMode is returned for a network mode this build does not know.
	ErrUnknownMode = errors.New("unknown network mode")
	// ErrNoSubnet means every candidate NAT subnet overlaps a prefix in use.
	ErrNoSubnet = errors.New("no free subnet for the NAT network")
	// ErrSubnetFull means every guest address of the NAT subnet is taken.
	ErrSubnetFull = errors.New("NAT subnet full")
)

// SentenceError is an error whose message is a complete sentence for the
// user and which still matches a sentinel with errors.Is.
type SentenceError struct {
	msg  string
	kind error
}

func (e *SentenceError) Error() string { return e.msg }
func (e *SentenceError) Unwrap() error { return e.kind }

// Refuse builds a SentenceError classified as kind.
func Refuse(kind error, format string, args ...any) error {
	return &SentenceError{msg: fmt.Sprintf(format, args...), kind: kind}
}
