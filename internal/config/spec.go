package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// Spec is a validated VM request, ready for network planning and the
// QEMU command line.
type Spec struct {
	Name       string
	Disks      []launcher.Disk
	Snapshot   bool
	MemMiB     uint64
	CPUs       int
	MAC        net.HardwareAddr
	MACSet     bool // the user chose the MAC
	Kernel     string
	Initrd     string
	Append     string
	NetMode    netsetup.Mode
	NetParent  string
	Uplink     string
	Forwards   []netsetup.Forward
	GuestIP    *net.IPNet
	Gateway    net.IP
	NoHostLink bool
	// FollowUplink: watch the host's network while the VM runs
	// (--follow-uplink on).
	FollowUplink bool
	NAT          netsetup.NATOptions
	Timeout      time.Duration
	Grace        time.Duration
	// WaitAddress stops the run (exit code 124) when the guest has no
	// address this long after QEMU started; 0 means never.
	WaitAddress time.Duration
	QEMU        string
	QEMUArgs    []string
	Console     string // auto, serial, none, gui
	SerialLog   string
	Accel       string // auto, kvm, tcg
	// Agent adds the guest agent's channel and the exec ports.
	Agent bool
	// Exec is the command --exec runs in the guest (nil: none).
	Exec []string
	// Shares are host directories exported to the guest.
	Shares []launcher.Share
	// Timestamps prefixes each line of the serial log and exec output
	// with the time.
	Timestamps bool
	// QEMUPrivileged: QEMU runs as vmrun's user with its privileges, no
	// sandbox (--qemu-privileged).
	QEMUPrivileged bool
	// CloudInit is the guest's NoCloud seed, if any.
	CloudInit CloudInit
}

// MaxCPUs is the largest --cpus accepted.
const MaxCPUs = 255

// Resolve validates every setting and returns the Spec. The first problem
// found is returned as one sentence naming the setting and the fix.
func (c Config) Resolve() (Spec, error) {
	var s Spec
	var err error
	if err = c.resolveBoot(&s); err != nil {
		return Spec{}, err
	}
	if s.Name, err = resolveName(c.Name, c.Disk, c.Kernel); err != nil {
		return Spec{}, err
	}
	if s.MemMiB, err = ParseMem(c.Mem); err != nil {
		return Spec{}, err
	}
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return Spec{}, fmt.Errorf("--cpus %d is out of range: give a number from 1 to %d", c.CPUs, MaxCPUs)
	}
	s.CPUs = c.CPUs
	if c.MAC != "" {
		if s.MAC, err = netsetup.ParseMAC(c.MAC); err != nil {
			return Spec{}, err
		}
		s.MACSet = true
	} else {
		s.MAC = netsetup.DeriveMAC(s.Name)
	}
	if err = c.resolveNet(&s); err != nil {
		return Spec{}, err
	}
	if s.Timeout, err = ParseDuration("timeout", c.Timeout); err != nil {
		return Spec{}, err
	}
	if s.Grace, err = ParseDuration("shutdown-grace", c.ShutdownGrace); err != nil {
		return Spec{}, err
	}
	if s.WaitAddress, err = ParseDuration("wait-address", c.WaitAddress); err != nil {
		return Spec{}, err
	}
	switch c.Console {
	case "auto", "serial", "none", "gui":
		s.Console = c.Console
	default:
		return Spec{}, fmt.Errorf("--console %q is not one of auto, serial, none, gui", c.Console)
	}
	switch c.Accel {
	case "auto", "kvm", "tcg":
		s.Accel = c.Accel
	default:
		return Spec{}, fmt.Errorf("--accel %q is not one of auto, kvm, tcg", c.Accel)
	}
	if c.SerialLog != "" {
		if fi, err := os.Stat(filepath.Dir(c.SerialLog)); err != nil || !fi.IsDir() {
			return Spec{}, fmt.Errorf("--serial-log %s: directory %s does not exist; create it or choose another path", c.SerialLog, filepath.Dir(c.SerialLog))
		}
		s.SerialLog = c.SerialLog
	}
	if c.QEMU == "" {
		return Spec{}, errors.New("--qemu is empty: give the path of qemu-system-x86_64")
	}
	s.QEMU = c.QEMU
	s.QEMUArgs = append([]string(nil), c.QEMUArg...)
	if err = c.resolveExec(&s); err != nil {
		return Spec{}, err
	}
	if err = c.resolveCloudInit(&s); err != nil {
		return Spec{}, err
	}
	s.QEMUPrivileged = c.QEMUPrivileged
	return s, nil
}

// resolveExec checks --agent, --exec, --share and --timestamps.
func (c Config) resolveExec(s *Spec) error {
	switch c.Agent {
	case "on", "":
		s.Agent = true
	case "off":
	default:
		return fmt.Errorf("--agent %q is not on or off", c.Agent)
	}
	if c.Exec != nil {
		if len(c.Exec) == 0 || strings.TrimSpace(c.Exec[0]) == "" {
			return errors.New("--exec needs a command: write it after --, e.g. --exec -- make test")
		}
		if !s.Agent {
			return errors.New("--exec runs the command through the guest agent: remove --agent off")
		}
		s.Exec = append([]string(nil), c.Exec...)
	}
	tags := map[string]bool{}
	for _, arg := range c.Share {
		sh, err := ParseShare(arg)
		if err != nil {
			return err
		}
		if tags[sh.Tag] {
			return fmt.Errorf("--share %s: tag %q is used twice: give each share its own tag (HOSTDIR:TAG)", arg, sh.Tag)
		}
		tags[sh.Tag] = true
		s.Shares = append(s.Shares, sh)
	}
	s.Timestamps = c.Timestamps
	return nil
}

// nameByte reports whether c may stand in a share tag or a derived name:
// an ASCII letter or digit, '.', '_' or '-'.
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// validTag reports whether tag is 1-31 name bytes (a loop, not a regexp:
// compiling one at package init cost vmrun ≈ 0.5 ms at every start).
func validTag(tag string) bool {
	if len(tag) < 1 || len(tag) > 31 {
		return false
	}
	for i := 0; i < len(tag); i++ {
		if !nameByte(tag[i]) {
			return false
		}
	}
	return true
}

// ParseShare parses HOSTDIR[:TAG][:ro]. The tag defaults to the directory's
// base name; the directory must exist.
func ParseShare(arg string) (launcher.Share, error) {
	parts := strings.Split(arg, ":")
	sh := launcher.Share{Path: parts[0]}
	rest := parts[1:]
	if n := len(rest); n > 0 && rest[n-1] == "ro" {
		sh.ReadOnly, rest = true, rest[:n-1]
	}
	switch len(rest) {
	case 0:
	case 1:
		sh.Tag = rest[0]
	default:
		return sh, fmt.Errorf("--share %q is not HOSTDIR[:TAG][:ro]", arg)
	}
	if sh.Path == "" {
		return sh, fmt.Errorf("--share %q has no directory: write HOSTDIR[:TAG][:ro]", arg)
	}
	fi, err := os.Stat(sh.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return sh, fmt.Errorf("--share %s: directory %s does not exist", arg, sh.Path)
	case err != nil:
		return sh, fmt.Errorf("--share %s: %v", arg, errors.Unwrap(err))
	case !fi.IsDir():
		return sh, fmt.Errorf("--share %s: %s is not a directory", arg, sh.Path)
	}
	sh.Path = absOrEmpty(sh.Path)
	if sh.Tag == "" {
		sh.Tag = filepath.Base(sh.Path)
	}
	if !validTag(sh.Tag) {
		return sh, fmt.Errorf("--share %s: tag %q must be 1-31 letters, digits, '.', '_' or '-': give one as HOSTDIR:TAG", arg, sh.Tag)
	}
	return sh, nil
}

func (c Config) resolveBoot(s *Spec) error {
	if len(c.Disk) == 0 && c.Kernel == "" {
		return errors.New("nothing to boot: give a disk image with --disk FILE (qcow2 or raw), or a kernel with --kernel")
	}
	for _, p := range c.Disk {
		if strings.TrimSpace(p) == "" {
			return errors.New("--disk is empty: give the path of a qcow2 or raw disk image")
		}
		format, err := DetectFormat(p, !c.Snapshot)
		if err != nil {
			return err
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("disk image %s: %w", p, err)
		}
		s.Disks = append(s.Disks, launcher.Disk{Path: abs, Format: format})
	}
	s.Snapshot = c.Snapshot
	for flag, p := range map[string]string{"kernel": c.Kernel, "initrd": c.Initrd} {
		if p == "" {
			continue
		}
		if err := readableFile(flag, p); err != nil {
			return err
		}
	}
	if c.Initrd != "" && c.Kernel == "" {
		return errors.New("--initrd needs --kernel: give the kernel to boot with it")
	}
	if c.Append != "" && c.Kernel == "" {
		return errors.New("--append needs --kernel: kernel arguments only apply to direct kernel boot")
	}
	s.Kernel, s.Initrd, s.Append = absOrEmpty(c.Kernel), absOrEmpty(c.Initrd), c.Append
	return nil
}

func absOrEmpty(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func readableFile(flag, p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("--%s %s does not exist: check the path", flag, p)
	case err != nil:
		return fmt.Errorf("--%s %s cannot be read: %v", flag, p, errors.Unwrap(err))
	case fi.IsDir():
		return fmt.Errorf("--%s %s is a directory: give a file", flag, p)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("--%s %s cannot be read: %v", flag, p, errors.Unwrap(err))
	}
	f.Close()
	return nil
}

// dashUnsafe replaces each run of bytes that are not name bytes with one '-'.
func dashUnsafe(s string) string {
	var b strings.Builder
	run := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case nameByte(c):
			b.WriteByte(c)
			run = false
		case !run:
			b.WriteByte('-')
			run = true
		}
	}
	return b.String()
}

// resolveName returns the explicit name, validated, or one derived from the
// first disk's (or the kernel's) file name.
func resolveName(name string, disks []string, kernel string) (string, error) {
	if name != "" {
		if err := rundir.ValidateName(name); err != nil {
			return "", fmt.Errorf("--name: %w", err)
		}
		return name, nil
	}
	src := kernel
	if len(disks) > 0 {
		src = disks[0]
	}
	base := filepath.Base(src)
	for _, ext := range []string{".qcow2", ".qcow", ".img", ".raw", ".disk"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.Trim(dashUnsafe(base), "-._")
	if len(base) > rundir.MaxNameLen {
		base = base[:rundir.MaxNameLen]
	}
	if base == "" {
		base = "vm"
	}
	return base, nil
}

func (c Config) resolveNet(s *Spec) error {
	mode, parent, err := netsetup.ParseNet(c.Net)
	if err != nil {
		return err
	}
	s.NetMode, s.NetParent, s.Uplink = mode, parent, c.Uplink
	for _, f := range c.Forward {
		fw, err := netsetup.ParseForward(f)
		if err != nil {
			return err
		}
		s.Forwards = append(s.Forwards, fw)
	}
	if err := netsetup.CheckForwardMode(mode, s.Forwards); err != nil {
		return err
	}
	if c.GuestIP != "" {
		ip, ipnet, err := net.ParseCIDR(c.GuestIP)
		if err != nil {
			return fmt.Errorf("--guest-ip %q is not ADDRESS/PREFIX: write e.g. 192.168.1.50/24", c.GuestIP)
		}
		ipnet.IP = ip
		s.GuestIP = ipnet
	}
	if c.Gateway != "" {
		if s.Gateway = net.ParseIP(c.Gateway); s.Gateway == nil {
			return fmt.Errorf("--gateway %q is not an IP address", c.Gateway)
		}
		if s.GuestIP == nil {
			return errors.New("--gateway needs --guest-ip: give the guest's address too")
		}
	}
	s.NoHostLink = c.NoHostLink
	switch c.FollowUplink {
	case "on", "":
		s.FollowUplink = true
	case "off":
	default:
		return fmt.Errorf("--follow-uplink %q is not on or off", c.FollowUplink)
	}
	return c.resolveNAT(s)
}

// resolveNAT checks the NAT options; they only matter with --net nat.
func (c Config) resolveNAT(s *Spec) error {
	if c.NATSubnet != "" {
		p, err := netsetup.ParseNATSubnet(c.NATSubnet)
		if err != nil {
			return err
		}
		s.NAT.Subnet = p.String()
	}
	if c.ResolvConf != "" {
		if err := readableFile("resolv-conf", c.ResolvConf); err != nil {
			return err
		}
		s.NAT.ResolvConf = absOrEmpty(c.ResolvConf)
	}
	return nil
}
