// Package hostcheck holds `vmrun doctor`'s checks of the host: QEMU, the
// devices, the kernel's link kinds and nftables (through netsetup/doctor),
// passt, the forward firewall, NetworkManager, the runtime root and
// leftovers, and the report (Report: its text form and its --json). The
// command and the plan of --net auto stay in cmd/vmrun.
package hostcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/internal/kvmcheck"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup/doctor"
	"github.com/vmrun/vmrun/netsetup/gc"
)

// Check statuses: ok; warn (works, but worse than it could); fail (a
// feature is missing); unknown (vmrun could not find out).
const (
	StatusOK      = "ok"
	StatusWarn    = "warn"
	StatusFail    = "fail"
	StatusUnknown = "unknown"
)

// Check is one line of `vmrun doctor`. Its JSON form is stable: tools may
// depend on the IDs and fields.
type Check struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Summary string `json:"summary"`
	Fix     string `json:"fix"`
}

// IDs are the check IDs, in the order Run returns them.
var IDs = []string{"qemu", "kvm", "vhost-net", "tun", "bridge", "macvtap", "ipvtap", "nftables",
	"passt", "forward-firewall", "networkmanager", "runtime-dir", "leftovers"}

// Run runs every check, in the order of IDs; root is the runtime root.
func Run(root string) []Check {
	var r []Check
	add := func(ch Check) { r = append(r, ch) }
	add(checkQEMU())
	add(checkKVM(root))
	add(checkDevice("vhost-net", "/dev/vhost-net", "vhost-net", "tap-based modes run without vhost acceleration",
		"modprobe vhost_net (and add yourself to the group owning /dev/vhost-net)"))
	p := doctor.ProbeKernel()
	probe := func(id, what, fix string, pr doctor.Probe) Check {
		switch {
		case !pr.Known:
			return Check{ID: id, Status: StatusUnknown, Summary: what + ": cannot probe without root (a throwaway network namespace is needed)", Fix: "run vmrun doctor as root"}
		case pr.OK:
			return Check{ID: id, Status: StatusOK, Summary: what + " can be created"}
		}
		s := what + " cannot be created"
		if pr.Err != nil {
			s += fmt.Sprintf(" (%v)", pr.Err)
		}
		return Check{ID: id, Status: StatusFail, Summary: s, Fix: fix}
	}
	add(probe("tun", "tap links", "load the tun module (modprobe tun); every tap-based mode needs it", p.Tun))
	add(probe("bridge", "bridges", "load the bridge module (modprobe bridge); --net nat needs it", p.Bridge))
	add(probe("macvtap", "macvtap links", "load the macvtap module (modprobe macvtap; CONFIG_MACVTAP); wired uplinks fall back to user mode without it", p.Macvtap))
	add(probe("ipvtap", "ipvtap links", "load the ipvtap module (modprobe ipvtap; CONFIG_IPVTAP); Wi-Fi uplinks fall back to routed or user mode without it", p.IPVtap))
	add(probe("nftables", "nftables tables", "a kernel with nftables (CONFIG_NF_TABLES, nft_nat, nft_masq); --net nat needs it", p.Nftables))
	add(checkPasst())
	add(checkForwardFirewall())
	add(checkNetworkManager("/etc/NetworkManager"))
	add(checkRuntimeDir(root))
	add(checkLeftovers(root))
	return r
}

// qemuVersionRE is compiled when first used (vmrun doctor), not at the
// start of every command.
var qemuVersionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`version (\d+)\.(\d+)`) })

func checkQEMU() Check {
	const fix = "apt-get install qemu-system-x86 (QEMU 7.2 or newer)"
	path, err := exec.LookPath(config.Defaults().QEMU)
	if err != nil {
		return Check{ID: "qemu", Status: StatusFail, Summary: "QEMU (qemu-system-x86_64) is not installed", Fix: fix}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return Check{ID: "qemu", Status: StatusFail, Summary: fmt.Sprintf("%s --version failed: %v", path, err), Fix: fix}
	}
	return qemuVersionCheck(path, string(out))
}

// qemuVersionCheck judges `qemu --version` output: 7.2 has the stream
// netdev passt needs.
func qemuVersionCheck(path, out string) Check {
	m := qemuVersionRE().FindStringSubmatch(out)
	if m == nil {
		return Check{ID: "qemu", Status: StatusWarn, Summary: fmt.Sprintf("%s: cannot read its version from %q", path, strings.TrimSpace(out))}
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	v := m[1] + "." + m[2]
	if major < 7 || major == 7 && minor < 2 {
		return Check{ID: "qemu", Status: StatusWarn, Summary: fmt.Sprintf("QEMU %s at %s is older than 7.2: user mode cannot use passt (no stream netdev)", v, path), Fix: "upgrade QEMU to 7.2 or newer"}
	}
	return Check{ID: "qemu", Status: StatusOK, Summary: fmt.Sprintf("QEMU %s at %s", v, path)}
}

// checkKVM checks /dev/kvm: that KVM works with vmrun's CPU model
// (kvmcheck, whose answer for this boot root keeps), and that the user
// QEMU runs as may open it.
func checkKVM(root string) Check {
	without := "guests run under TCG emulation, many times slower"
	ch := checkDevice("kvm", "/dev/kvm", "KVM", without,
		"enable virtualization (VT-x/AMD-V) in the firmware, load kvm_intel or kvm_amd, and add yourself to group kvm")
	if ch.Status != StatusOK {
		return ch
	}
	if qemu, err := exec.LookPath(config.Defaults().QEMU); err == nil { // else the qemu check reports it
		if why := kvmcheck.Works(root, qemu); why != "" {
			return Check{ID: "kvm", Status: StatusWarn, Summary: launcher.KVMBroken(why) + ": " + without,
				Fix: launcher.KVMBrokenFix}
		}
		ch.Summary += " and KVM works with -cpu host"
	}
	if denied := confine.KVMDenied(config.Spec{}); denied != "" {
		return Check{ID: "kvm", Status: StatusWarn, Summary: "KVM: " + denied + ": " + without,
			Fix: launcher.KVMDeniedFix}
	}
	return ch
}

func checkDevice(id, path, name, without, fix string) Check {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return Check{ID: id, Status: StatusOK, Summary: path + " is usable"}
	}
	what := "is missing"
	if !os.IsNotExist(err) {
		what = fmt.Sprintf("cannot be opened (%v)", unwrapPath(err))
	}
	return Check{ID: id, Status: StatusWarn, Summary: fmt.Sprintf("%s: %s %s: %s", name, path, what, without), Fix: fix}
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func checkPasst() Check {
	if p, err := exec.LookPath("passt"); err == nil {
		return Check{ID: "passt", Status: StatusOK, Summary: "passt is installed at " + p}
	}
	return Check{ID: "passt", Status: StatusWarn, Summary: "passt is not installed: --net user falls back to QEMU's slirp (the guest sits behind QEMU's NAT, at 10.0.2.15 and in fec0::/64, and --forward binds IPv4 host addresses only)", Fix: "apt-get install passt"}
}

func checkForwardFirewall() Check {
	chains, notice, err := doctor.ForwardBlockers()
	switch {
	case err != nil:
		return Check{ID: "forward-firewall", Status: StatusUnknown, Summary: fmt.Sprintf("cannot list the nftables ruleset: %v", err), Fix: "run vmrun doctor as root"}
	case len(chains) > 0:
		summary, fix, _ := strings.Cut(notice, "; to let them through: ")
		return Check{ID: "forward-firewall", Status: StatusWarn, Summary: summary, Fix: fix + " (see docs/nat.md)"}
	}
	return Check{ID: "forward-firewall", Status: StatusOK, Summary: "no nftables chain drops forwarded packets by policy"}
}

// checkNetworkManager warns when NetworkManager is installed and nothing
// tells it to leave vmr* links alone.
func checkNetworkManager(dir string) Check {
	if _, err := os.Stat(dir); err != nil {
		return Check{ID: "networkmanager", Status: StatusOK, Summary: "NetworkManager is not installed"}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "conf.d", "*.conf"))
	files = append(files, filepath.Join(dir, "NetworkManager.conf"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "interface-name:vmr") {
			return Check{ID: "networkmanager", Status: StatusOK, Summary: "NetworkManager leaves vmr* links unmanaged (" + f + ")"}
		}
	}
	return Check{ID: "networkmanager", Status: StatusWarn,
		Summary: "NetworkManager may configure vmrun's links (vmr*): it can add addresses or bring them down under a running guest",
		Fix:     "sudo vmrun setup, or a file in " + filepath.Join(dir, "conf.d") + " with [keyfile] unmanaged-devices+=interface-name:vmr*"}
}

func checkRuntimeDir(root string) Check {
	fi, err := os.Stat(root)
	switch {
	case os.IsNotExist(err):
		parent := filepath.Dir(root)
		if unix.Access(parent, unix.W_OK|unix.X_OK) != nil {
			return Check{ID: "runtime-dir", Status: StatusFail, Summary: fmt.Sprintf("the runtime root %s does not exist and %s is not writable", root, parent), Fix: "set " + rundir.EnvRoot + " to a directory you can write"}
		}
		return Check{ID: "runtime-dir", Status: StatusOK, Summary: root + " will be created"}
	case err != nil:
		return Check{ID: "runtime-dir", Status: StatusFail, Summary: fmt.Sprintf("runtime root %s: %v", root, unwrapPath(err)), Fix: "set " + rundir.EnvRoot + " to a directory you can write"}
	case !fi.IsDir():
		return Check{ID: "runtime-dir", Status: StatusFail, Summary: root + " is not a directory", Fix: "remove it, or set " + rundir.EnvRoot}
	case unix.Access(root, unix.W_OK|unix.X_OK) != nil:
		return Check{ID: "runtime-dir", Status: StatusFail, Summary: "the runtime root " + root + " is not writable", Fix: "fix its owner, or set " + rundir.EnvRoot}
	case fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0:
		return Check{ID: "runtime-dir", Status: StatusWarn, Summary: "the runtime root " + root + " is world-writable", Fix: "chmod 0755 " + root}
	}
	return Check{ID: "runtime-dir", Status: StatusOK, Summary: root + " is usable"}
}

func checkLeftovers(root string) Check {
	l, err := gc.Leftovers(root)
	switch {
	case err != nil:
		return Check{ID: "leftovers", Status: StatusUnknown, Summary: fmt.Sprintf("cannot look for leftovers: %v", err)}
	case len(l) > 0:
		return Check{ID: "leftovers", Status: StatusWarn, Summary: "leftovers of killed vmruns: " + strings.Join(l, "; "), Fix: "vmrun gc"}
	}
	return Check{ID: "leftovers", Status: StatusOK, Summary: "nothing for vmrun gc to remove"}
}
