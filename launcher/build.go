package launcher

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmrun/vmrun/launcher/internal/nicqmp"
)

// Cmdline is a QEMU invocation as data: nothing has been run.
type Cmdline struct {
	// Path is the QEMU binary.
	Path string
	// Args are the arguments after the binary name.
	Args []string
	// ExtraFiles become fds 3, 4, ... in QEMU (exec.Cmd.ExtraFiles).
	ExtraFiles []*os.File
}

// Errors returned by Build.
var (
	ErrNoBoot    = errors.New("nothing to boot: give --disk or --kernel")
	ErrBadNIC    = errors.New("invalid network attachment")
	ErrBadMemory = errors.New("invalid memory size")
)

// Build returns the QEMU command line for vm. It is pure: it opens, creates
// and runs nothing, so it is safe for --dry-run and golden tests.
func Build(vm VM) (Cmdline, error) {
	if len(vm.Disks) == 0 && vm.Kernel == "" {
		return Cmdline{}, ErrNoBoot
	}
	if vm.MemMiB == 0 {
		return Cmdline{}, ErrBadMemory
	}
	b := &builder{}
	b.machine(vm)
	b.console(vm.Console)
	b.disks(vm)
	if vm.Kernel != "" && vm.BootFiles == nil {
		b.add("-kernel", vm.Kernel)
		if vm.Initrd != "" {
			b.add("-initrd", vm.Initrd)
		}
	}
	if vm.Kernel != "" && vm.Append != "" {
		b.add("-append", vm.Append)
	}
	if vm.NIC != nil {
		if err := b.nic(*vm.NIC, vm.CPUs); err != nil {
			return Cmdline{}, err
		}
	} else if vm.LateNIC {
		b.hotplugPorts()
	}
	b.shares(vm.Shares)
	// The NIC's fds come first (fd=3 for the tap, as in QEMU's examples),
	// then the monitor's listener, then the agent's.
	b.monitor(vm)
	if vm.Agent != nil {
		b.agent(*vm.Agent)
	}
	// fdsets (disks, the runtime directory's label) last, so the NIC
	// keeps fd 3.
	if vm.RunDir != "" {
		b.fdset(vm.RunDir, vm.RunDirFile)
	}
	b.addFDs()
	if vm.Kernel != "" && vm.BootFiles != nil {
		b.add("-kernel", "/proc/self/fd/"+strconv.Itoa(b.file(vm.BootFiles.Kernel)))
		if vm.Initrd != "" {
			b.add("-initrd", "/proc/self/fd/"+strconv.Itoa(b.file(vm.BootFiles.Initrd)))
		}
	}
	b.add(vm.ExtraArgs...)
	return Cmdline{Path: vm.QEMU, Args: b.args, ExtraFiles: b.files}, nil
}

type builder struct {
	args  []string
	files []*os.File
	sets  []fdset
}

// fdset is a set of fds QEMU opens as /dev/fdset/ID, labelled with the
// path they stand for.
type fdset struct {
	id    int
	label string
	files []*os.File
}

// fdset registers files as a new fdset and returns the path QEMU opens it by.
func (b *builder) fdset(label string, files ...*os.File) string {
	id := len(b.sets)
	b.sets = append(b.sets, fdset{id: id, label: label, files: files})
	return "/dev/fdset/" + strconv.Itoa(id)
}

// addFDs passes the registered fdsets (QEMU reads every -add-fd before it
// opens any drive, wherever they stand in the command line).
func (b *builder) addFDs() {
	for _, s := range b.sets {
		for _, f := range s.files {
			b.add("-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", b.file(f), s.id, escape(s.label)))
		}
	}
}

// machineArgs returns -machine (and under KVM -cpu) as vmrun boots a VM:
// q35 without the parts no vmrun guest uses, each of which the firmware
// would otherwise probe at every boot (measured: the first console byte
// comes tens of ms sooner under TCG): the SMBus and VMware's I/O port
// always; the AHCI (SATA) controller when noSATA (no --qemu-arg, which may
// attach a -cdrom or SATA/IDE drive). ProbeKVM starts QEMU with the same.
func machineArgs(kvm, noSATA bool) []string {
	machine := "q35,smbus=off,vmport=off"
	if noSATA {
		machine += ",sata=off"
	}
	if kvm {
		return []string{"-machine", machine + ",accel=kvm", "-cpu", "host"}
	}
	return []string{"-machine", machine + ",accel=tcg"}
}

func (b *builder) add(a ...string) { b.args = append(b.args, a...) }

// file registers f as an inherited fd and returns its number in QEMU.
func (b *builder) file(f *os.File) int {
	b.files = append(b.files, f)
	return 2 + len(b.files)
}

func (b *builder) machine(vm VM) {
	b.add("-name", vm.Name)
	b.add(machineArgs(vm.KVM, len(vm.ExtraArgs) == 0)...)
	cpus := vm.CPUs
	if cpus < 1 {
		cpus = 1
	}
	b.add("-m", strconv.FormatUint(vm.MemMiB, 10)+"M", "-smp", strconv.Itoa(cpus))
	// -nodefaults: no NIC, VGA, serial or monitor of QEMU's own choosing;
	// -S: stay paused until vmrun has its QMP event reader running.
	b.add("-nodefaults", "-no-user-config", "-S")
	b.add("-device", "pvpanic")
	if vm.Sandbox {
		b.add("-sandbox", SandboxArg)
	}
	if vm.PIDFile != "" {
		b.add("-pidfile", vm.PIDFile)
	}
}

func (b *builder) monitor(vm VM) {
	fd := b.file(vm.QMP)
	b.add("-chardev", fmt.Sprintf("socket,id=qmp,fd=%d,server=on,wait=off", fd))
	b.add("-mon", "chardev=qmp,mode=control")
}

// agent adds the virtio-serial controller, the guest agent's port (a
// socket chardev on a connection vmrun keeps: see AgentPorts) and the exec
// output ports (socket chardevs on listeners vmrun made).
func (b *builder) agent(a AgentPorts) {
	b.add("-device", "virtio-serial-pci,id=vser0")
	for _, p := range []struct {
		f        *os.File
		chardev  string
		id, name string
		listener bool
	}{
		{a.QGA, "qga", AgentPortID, AgentPortName, false},
		{a.Stdout, "execout", "execout0", StdoutPortName, true},
		{a.Stderr, "execerr", "execerr0", StderrPortName, true},
	} {
		chardev := fmt.Sprintf("socket,id=%s,fd=%d", p.chardev, b.file(p.f))
		if p.listener {
			chardev += ",server=on,wait=off"
		}
		b.add("-chardev", chardev)
		b.add("-device", fmt.Sprintf("virtserialport,bus=vser0.0,chardev=%s,id=%s,name=%s", p.chardev, p.id, p.name))
	}
}

// shares exports host directories over virtio-9p (built into QEMU).
func (b *builder) shares(shares []Share) {
	for i, s := range shares {
		id := "fs" + strconv.Itoa(i)
		fsdev := []string{"local", "id=" + id, "path=" + escape(s.Path), "security_model=none"}
		if s.ReadOnly {
			fsdev = append(fsdev, "readonly=on")
		}
		b.add("-fsdev", strings.Join(fsdev, ","))
		b.add("-device", "virtio-9p-pci,fsdev="+id+",mount_tag="+escape(s.Tag))
	}
}

func (b *builder) console(c Console) {
	// The serial port always goes to QEMU's stdout, which is a pipe read by
	// vmrun (it copies it to the terminal and/or --serial-log); signal=off
	// so that a Ctrl-C typed into the console reaches vmrun, not QEMU.
	b.add("-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console")
	switch c {
	case ConsoleGUI:
		b.add("-device", "VGA", "-device", "qemu-xhci", "-device", "usb-tablet")
	default:
		b.add("-display", "none")
	}
}

func (b *builder) disks(vm VM) {
	for i, d := range vm.Disks {
		file := escape(d.Path)
		if d.Files != nil {
			file = b.fdset(d.Path, d.Files.Image...)
		}
		opts := []string{"file=" + file, "format=" + d.Format}
		prefix := "backing."
		if vm.Snapshot {
			// The overlay is the drive, the image its backing (opened
			// read-only); cache=unsafe as QEMU's snapshot=on has it: a
			// throwaway overlay need not reach the disk on a guest flush.
			opts = []string{"file=" + b.fdset("overlay:"+d.Path, d.Overlay...), "format=qcow2", "cache=unsafe",
				prefix + "driver=" + d.Format, prefix + "file.filename=" + file}
			prefix += "backing."
		}
		opts = append(opts, "if=virtio", "id=disk"+strconv.Itoa(i))
		if d.Files != nil {
			// The chain is named explicitly: QEMU would look for a
			// relative backing name next to /dev/fdset/N.
			for _, bk := range d.Files.Backing {
				opts = append(opts, prefix+"driver="+bk.Format, prefix+"file.filename="+b.fdset(bk.Path, bk.File))
				prefix += "backing."
			}
		}
		b.add("-drive", strings.Join(opts, ","))
	}
	if s := vm.Seed; s != nil {
		file := escape(s.Path)
		if s.Files != nil {
			file = b.fdset(s.Path, s.Files...)
		}
		// A read-only virtio disk: cloud-init finds it by its label.
		b.add("-drive", "file="+file+",format=raw,if=virtio,readonly=on,id=cidata")
	}
}

func (b *builder) nic(n NIC, cpus int) error {
	if len(n.MAC) != 6 {
		return fmt.Errorf("%w: MAC %q", ErrBadNIC, n.MAC)
	}
	netdev := []string{n.Backend, "id=net0"}
	// romfile= (empty): no iPXE option ROM, which the firmware would load
	// and run at every boot for a network boot vmrun never does.
	device := []string{"virtio-net-pci", "netdev=net0", "mac=" + n.MAC.String(), "romfile="}
	switch n.Backend {
	case "tap":
		q := len(n.Files)
		if q == 0 {
			return fmt.Errorf("%w: a tap attachment needs at least one fd", ErrBadNIC)
		}
		if len(n.VhostFiles) != 0 && len(n.VhostFiles) != q {
			return fmt.Errorf("%w: %d queues but %d vhost-net fds", ErrBadNIC, q, len(n.VhostFiles))
		}
		fds := make([]string, q)
		for i, f := range n.Files {
			fds[i] = strconv.Itoa(b.file(f))
		}
		if q == 1 {
			netdev = append(netdev, "fd="+fds[0])
		} else {
			netdev = append(netdev, "fds="+strings.Join(fds, ":"))
		}
		if len(n.VhostFiles) == 0 {
			netdev = append(netdev, "vhost=off")
		} else {
			vfds := make([]string, q)
			for i, f := range n.VhostFiles {
				vfds[i] = strconv.Itoa(b.file(f))
			}
			if q == 1 {
				netdev = append(netdev, "vhost=on", "vhostfd="+vfds[0])
			} else {
				netdev = append(netdev, "vhost=on", "vhostfds="+strings.Join(vfds, ":"))
			}
		}
		if n.MTU > 0 && n.MTU != 1500 {
			device = append(device, "host_mtu="+strconv.Itoa(n.MTU))
		}
		if q > 1 {
			// Two vectors per queue pair, one for config, one for control.
			device = append(device, "mq=on", "vectors="+strconv.Itoa(2*q+2))
		}
	case "user", "stream":
		if n.MTU != 0 {
			return fmt.Errorf("%w: %s sets its own MTU", ErrBadNIC, n.Backend)
		}
		switch {
		case n.Backend == "stream" && len(n.Files) == 1:
			// A connected stream socket (passt's other end), QEMU 7.2+.
			fd := b.file(n.Files[0])
			netdev = append(netdev, "server=off", "addr.type=fd", "addr.str="+strconv.Itoa(fd))
		case n.Backend == "stream" && len(n.Files) > 1:
			return fmt.Errorf("%w: stream takes one connected socket, not %d", ErrBadNIC, len(n.Files))
		case len(n.Files) != 0:
			return fmt.Errorf("%w: %s takes no fds", ErrBadNIC, n.Backend)
		}
	default:
		return fmt.Errorf("%w: unknown backend %q", ErrBadNIC, n.Backend)
	}
	netdev = append(netdev, n.Options...)
	if n.Hotplug {
		b.hotplugPorts()
		device = append(device, "id="+nicID(0), "bus="+portID(0))
	}
	b.add("-netdev", strings.Join(netdev, ","), "-device", strings.Join(device, ","))
	return nil
}

// hotplugPorts adds the root ports of a NIC with Hotplug: the NIC's,
// and a free one for its replacement (see SwapNIC); QEMU 7.2's q35
// hot-plugs them through ACPI. A VM with LateNIC gets them at the same
// place in the command line, so every PCI device keeps its address.
func (b *builder) hotplugPorts() {
	for i := range nicqmp.HotplugPorts {
		b.add("-device", fmt.Sprintf("pcie-root-port,id=%s,chassis=%d", portID(i), i+1))
	}
}

// escape doubles commas, QEMU's quoting inside option values.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Quote returns args as one shell-quoted line (for --dry-run).
func Quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=,.:/@%+", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
