package netsetup

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
)

// sentenceError is an error whose message is a complete sentence for the
// user and which still matches a sentinel with errors.Is.
type sentenceError struct {
	msg  string
	kind error
}

func (e *sentenceError) Error() string { return e.msg }
func (e *sentenceError) Unwrap() error { return e.kind }

// refuse builds a sentenceError classified as kind.
func refuse(kind error, format string, args ...any) error {
	return &sentenceError{msg: fmt.Sprintf(format, args...), kind: kind}
}

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
