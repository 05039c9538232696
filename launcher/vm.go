// Package launcher turns a VM description into a QEMU command line (pure
// code, no side effects) and runs and supervises that QEMU process: QMP
// start-up, guest events, signals, time-outs and exit codes.
package launcher

import (
	"net"
	"os"
)

// Console says where the guest's serial console and display go.
type Console string

// Console choices.
const (
	// ConsoleSerial: the first serial port on vmrun's stdout (and stdin when it is a terminal).
	ConsoleSerial Console = "serial"
	// ConsoleNone: no display; the serial port goes only to --serial-log, if given.
	ConsoleNone Console = "none"
	// ConsoleGUI: a graphical window (needs QEMU's GTK or SDL display).
	ConsoleGUI Console = "gui"
)

// Disk is one disk image.
type Disk struct {
	Path   string
	Format string // "qcow2" or "raw", detected from the file's contents
	// Files, when set, pass the image and its backing chain to QEMU as
	// open fds (fdsets) instead of paths: QEMU needs no access to them.
	Files *DiskFiles
	// Overlay is, with VM.Snapshot, the empty qcow2 image of the disk's
	// size that guest writes go to (internal/overlay), the image its
	// backing: opened read-only and read-write, as QEMU picks the fd whose
	// access mode it needs. A nil entry is a placeholder (--dry-run).
	Overlay []*os.File
}

// DiskFiles are the open files of one disk image and its backing chain.
// A nil *os.File is a placeholder (--dry-run).
type DiskFiles struct {
	// Image holds the image opened read-only and, unless --snapshot, also
	// read-write: QEMU picks the fd whose access mode it needs.
	Image []*os.File
	// Backing is the backing chain, the image's own backing file first;
	// QEMU opens backing files read-only.
	Backing []BackingFile
}

// BackingFile is one open image of a backing chain.
type BackingFile struct {
	Path   string
	Format string
	File   *os.File
}

// Seed is a cloud-init seed image (ISO9660 labelled cidata).
type Seed struct {
	Path string
	// Files, when set, hold the image opened read-only, passed to QEMU as
	// an fdset instead of the path (a confined QEMU cannot open the
	// runtime directory). A nil entry is a placeholder (--dry-run).
	Files []*os.File
}

// NIC is a network attachment as the launcher sees it: whatever the network
// mode, it is a QEMU netdev backend, optional file descriptors (queues and
// their vhost-net fds), a guest MAC and extra netdev options.
type NIC struct {
	// Backend is the QEMU -netdev type: "tap", "user" or "stream".
	Backend string
	// Files are tap/macvtap/ipvtap queue fds (one per queue), or the one
	// connected socket of a "stream" backend (passt). A nil entry is a
	// placeholder, used by --dry-run.
	Files []*os.File
	// VhostFiles are /dev/vhost-net fds, one per queue, or none (vhost=off).
	VhostFiles []*os.File
	// MAC is the guest NIC's MAC address.
	MAC net.HardwareAddr
	// Options are extra key=value netdev options (hostfwd=..., addr.path=...).
	Options []string
	// MTU, when set and not 1500, is told to the guest (virtio-net host_mtu)
	// so it matches the link's MTU.
	MTU int
	// Hotplug puts the NIC on a PCIe root port and reserves a second,
	// free one, so Process.SwapNIC can replace it while the guest runs.
	Hotplug bool
}

// VM describes one virtual machine.
type VM struct {
	Name string
	// QEMU is the path of the qemu-system binary.
	QEMU string
	// KVM selects hardware acceleration; otherwise TCG.
	KVM bool
	// MemMiB is the guest memory in MiB.
	MemMiB uint64
	CPUs   int
	Disks  []Disk
	// Snapshot sends guest writes to each disk's Overlay.
	Snapshot bool
	// Seed is the cloud-init NoCloud seed, attached read-only after the
	// disks; nil: none.
	Seed *Seed
	// Kernel, Initrd, Append: direct kernel boot.
	Kernel, Initrd, Append string
	Console                Console
	// QMP is the listening unix socket QEMU's monitor accepts on (passed as an
	// fd, so vmrun can connect without waiting for a socket file). nil is a
	// placeholder for --dry-run.
	QMP *os.File
	// NIC is the network attachment; nil means no network.
	NIC *NIC
	// LateNIC, with NIC nil, builds the command line of a VM whose NIC
	// (one with Hotplug) is plugged in over QMP while QEMU waits paused
	// (Process.PlugNIC), so that QEMU starts while the network is being
	// set up: the command line has only the NIC's hot-pluggable root
	// ports, at the place the NIC would have them, and the guest finds
	// the same PCI devices at the same addresses as with the NIC given.
	LateNIC bool
	// PIDFile, when set, is where QEMU writes its pid; it also puts the
	// runtime directory into QEMU's command line, which is how `vmrun gc`
	// recognises a QEMU that belongs to a VM before it kills it.
	PIDFile string
	// Agent, when set, adds a virtio-serial controller with the QEMU guest
	// agent's port and vmrun's exec output ports; nil means no agent
	// channel (--agent off).
	Agent *AgentPorts
	// Shares are host directories exported to the guest (virtio-9p).
	Shares []Share
	// RunDir, when set with RunDirFile (an O_PATH fd of the directory),
	// names the runtime directory in QEMU's command line without a path
	// QEMU must open: the fd is passed in an fdset labelled RunDir. It
	// stands in for PIDFile when QEMU runs as a user who cannot write there.
	RunDir     string
	RunDirFile *os.File
	// BootFiles, when set, pass --kernel and --initrd as open fds that
	// QEMU opens as /proc/self/fd/N: the directories of their paths need
	// not be searchable by QEMU's user (the files themselves must be
	// readable by it).
	BootFiles *BootFiles
	// Sandbox turns on QEMU's seccomp filter (SandboxArg).
	Sandbox bool
	// ExtraArgs are passed to QEMU last, unchanged (--qemu-arg).
	ExtraArgs []string
}

// Guest-side names of the virtio-serial ports vmrun adds.
const (
	// AgentPortName is the port qemu-ga looks for.
	AgentPortName = "org.qemu.guest_agent.0"
	// StdoutPortName and StderrPortName carry a `vmrun exec` command's
	// output while it runs.
	StdoutPortName = "org.vmrun.exec.stdout"
	StderrPortName = "org.vmrun.exec.stderr"
	// AgentPortID is the QEMU device id of the agent's port (QMP's
	// VSERPORT_CHANGE event names it).
	AgentPortID = "qga0"
)

// AgentPorts are the unix sockets of the agent channel, passed to QEMU as
// fds like the QMP one, so they work whichever user QEMU runs as: for the
// exec ports, listeners QEMU accepts on; for the guest agent's port, a
// connected socket (QEMU is the client) whose other end vmrun keeps while
// the VM runs. A nil file is a placeholder for --dry-run.
type AgentPorts struct {
	QGA, Stdout, Stderr *os.File
}

// Share is a host directory exported to the guest over virtio-9p; the
// guest mounts it by its tag.
type Share struct {
	Path     string
	Tag      string
	ReadOnly bool
}

// BootFiles are the open kernel and initrd of a direct kernel boot; a nil
// file is a placeholder (--dry-run).
type BootFiles struct {
	Kernel, Initrd *os.File
}
