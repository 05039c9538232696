package netsetup

import "github.com/vmrun/vmrun/netsetup/internal/detect"

// What Detect reports lives in package detect, which fills it; these are
// its names here (see there for each field).
type (
	// Facts is what Detect learned about the host: the interface that
	// matters (the default-route interface, or the one the user named) and
	// the capabilities. Decide is a pure function of Facts and a Request.
	Facts = detect.Facts
	// Caps are the host capabilities that decide which modes can work, each
	// probed once by Detect (never guessed from kernel versions): the
	// process's privileges (an explicit input of Decide, see Needs) and the
	// kernel's features.
	Caps = detect.Caps
	// UplinkKind classifies the interface a guest would attach to.
	UplinkKind = detect.UplinkKind
	// Wireless describes a Wi-Fi uplink.
	Wireless = detect.Wireless
	// UpperLink is a link stacked on the interface (its parent, IFLA_LINK).
	UpperLink = detect.UpperLink
	// Route is the route lookup that picked the uplink.
	Route = detect.Route
)

// The uplink kinds Detect reports.
const (
	UplinkBridge     = detect.UplinkBridge
	UplinkBridgePort = detect.UplinkBridgePort
	UplinkEthernet   = detect.UplinkEthernet
	UplinkWireless   = detect.UplinkWireless
	UplinkOther      = detect.UplinkOther
	UplinkNone       = detect.UplinkNone
)

// Wi-Fi interface types (nl80211 iftype) as Detect reports them.
const (
	WifiStation = detect.WifiStation
	WifiAdHoc   = detect.WifiAdHoc
	WifiAP      = detect.WifiAP
	WifiAPVLAN  = detect.WifiAPVLAN
	WifiMesh    = detect.WifiMesh
	WifiMonitor = detect.WifiMonitor
	WifiOther   = detect.WifiOther
)

// EnvPasst names the environment variable that chooses the passt binary
// for user mode: a path, or "off" for QEMU's slirp even when passt is
// installed. Unset: passt from PATH.
const EnvPasst = detect.EnvPasst

// ProbeCacheFile is the name, under vmrun's runtime root, of the file
// keeping the kernel's answer to which link types it can create for this
// boot (Request.ProbeCache).
const ProbeCacheFile = ".kernel-links.json"
