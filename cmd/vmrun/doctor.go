package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/doctor"
	"github.com/vmrun/vmrun/netsetup/gc"
)

// Check statuses: ok; warn (works, but worse than it could); fail (a
// feature is missing); unknown (vmrun could not find out).
const (
	statusOK      = "ok"
	statusWarn    = "warn"
	statusFail    = "fail"
	statusUnknown = "unknown"
)

// check is one line of `vmrun doctor`. Its JSON form is stable: tools may
// depend on the IDs and fields.
type check struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Summary string `json:"summary"`
	Fix     string `json:"fix"`
}

// doctorReport is `vmrun doctor --json`.
type doctorReport struct {
	// OK: --net auto can use a layer-2 mode (bridge, macvtap, ipvtap) here.
	OK     bool       `json:"ok"`
	Auto   doctorAuto `json:"auto"`
	Checks []check    `json:"checks"`
}

type doctorAuto struct {
	Mode   string `json:"mode"`
	Parent string `json:"parent"`
	Reason string `json:"reason"`
	Notice string `json:"notice"`
}

// The check IDs, in the order they are printed.
var doctorIDs = []string{"qemu", "kvm", "vhost-net", "tun", "bridge", "macvtap", "ipvtap", "nftables",
	"passt", "forward-firewall", "networkmanager", "runtime-dir", "leftovers"}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check what this host offers vmrun, and say how to fix what is missing",
		UsageText: "vmrun doctor [--json]",
		Description: `Checks QEMU, /dev/kvm, /dev/vhost-net, whether tap, bridge, macvtap and
ipvtap links and nftables tables can be created (tried in a throwaway
network namespace), passt, a firewall that drops forwarded packets,
NetworkManager, the runtime directory and leftovers of killed vmruns.
Prints one line per problem with its fix. Exit status 0 when --net auto
can use a layer-2 mode here (bridge, macvtap or ipvtap), 1 otherwise.`,
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}},
		OnUsageError: usageError,
		Action:       doctorAction,
	}
}

func doctorAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitcode.Usagef("unexpected argument %q (see `vmrun doctor --help`)", c.Args().First())
	}
	r := runDoctor(c.Context)
	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		for _, ch := range r.Checks {
			if ch.Status == statusOK {
				continue
			}
			line := fmt.Sprintf("%s: %s", ch.Status, ch.Summary)
			if ch.Fix != "" {
				line += "; fix: " + ch.Fix
			}
			fmt.Fprintln(out, line)
		}
		verdict := "--net auto uses " + r.Auto.Mode
		if r.Auto.Parent != "" {
			verdict += " on " + r.Auto.Parent
		}
		fmt.Fprintf(out, "%s (%s)\n", verdict, r.Auto.Reason)
	}
	if !r.OK {
		return exitcode.Wrap(exitcode.Usage, exitcode.ErrSilent)
	}
	return nil
}

// runDoctor runs every check.
func runDoctor(ctx context.Context) doctorReport {
	var r doctorReport
	add := func(ch check) { r.Checks = append(r.Checks, ch) }
	add(checkQEMU())
	add(checkDevice("kvm", "/dev/kvm", "KVM", "guests run under TCG emulation, many times slower",
		"enable virtualization (VT-x/AMD-V) in the firmware, load kvm_intel or kvm_amd, and add yourself to group kvm"))
	add(checkDevice("vhost-net", "/dev/vhost-net", "vhost-net", "tap-based modes run without vhost acceleration",
		"modprobe vhost_net (and add yourself to the group owning /dev/vhost-net)"))
	p := doctor.ProbeKernel()
	probe := func(id, what, fix string, pr doctor.Probe) check {
		switch {
		case !pr.Known:
			return check{ID: id, Status: statusUnknown, Summary: what + ": cannot probe without root (a throwaway network namespace is needed)", Fix: "run vmrun doctor as root"}
		case pr.OK:
			return check{ID: id, Status: statusOK, Summary: what + " can be created"}
		}
		s := what + " cannot be created"
		if pr.Err != nil {
			s += fmt.Sprintf(" (%v)", pr.Err)
		}
		return check{ID: id, Status: statusFail, Summary: s, Fix: fix}
	}
	add(probe("tun", "tap links", "load the tun module (modprobe tun); every tap-based mode needs it", p.Tun))
	add(probe("bridge", "bridges", "load the bridge module (modprobe bridge); --net nat needs it", p.Bridge))
	add(probe("macvtap", "macvtap links", "load the macvtap module (modprobe macvtap; CONFIG_MACVTAP); wired uplinks fall back to user mode without it", p.Macvtap))
	add(probe("ipvtap", "ipvtap links", "load the ipvtap module (modprobe ipvtap; CONFIG_IPVTAP); Wi-Fi uplinks fall back to routed or user mode without it", p.IPVtap))
	add(probe("nftables", "nftables tables", "a kernel with nftables (CONFIG_NF_TABLES, nft_nat, nft_masq); --net nat needs it", p.Nftables))
	add(checkPasst())
	add(checkForwardFirewall())
	add(checkNetworkManager("/etc/NetworkManager"))
	root := rundir.Root()
	add(checkRuntimeDir(root))
	add(checkLeftovers(root))
	r.Auto, r.OK = autoVerdict(ctx)
	return r
}

var qemuVersionRE = regexp.MustCompile(`version (\d+)\.(\d+)`)

func checkQEMU() check {
	const fix = "apt-get install qemu-system-x86 (QEMU 7.2 or newer)"
	path, err := exec.LookPath(config.Defaults().QEMU)
	if err != nil {
		return check{ID: "qemu", Status: statusFail, Summary: "QEMU (qemu-system-x86_64) is not installed", Fix: fix}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return check{ID: "qemu", Status: statusFail, Summary: fmt.Sprintf("%s --version failed: %v", path, err), Fix: fix}
	}
	return qemuVersionCheck(path, string(out))
}

// qemuVersionCheck judges `qemu --version` output: 7.2 has the stream
// netdev passt needs.
func qemuVersionCheck(path, out string) check {
	m := qemuVersionRE.FindStringSubmatch(out)
	if m == nil {
		return check{ID: "qemu", Status: statusWarn, Summary: fmt.Sprintf("%s: cannot read its version from %q", path, strings.TrimSpace(out))}
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	v := m[1] + "." + m[2]
	if major < 7 || major == 7 && minor < 2 {
		return check{ID: "qemu", Status: statusWarn, Summary: fmt.Sprintf("QEMU %s at %s is older than 7.2: user mode cannot use passt (no stream netdev)", v, path), Fix: "upgrade QEMU to 7.2 or newer"}
	}
	return check{ID: "qemu", Status: statusOK, Summary: fmt.Sprintf("QEMU %s at %s", v, path)}
}

func checkDevice(id, path, name, without, fix string) check {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return check{ID: id, Status: statusOK, Summary: path + " is usable"}
	}
	what := "is missing"
	if !os.IsNotExist(err) {
		what = fmt.Sprintf("cannot be opened (%v)", unwrapPath(err))
	}
	return check{ID: id, Status: statusWarn, Summary: fmt.Sprintf("%s: %s %s: %s", name, path, what, without), Fix: fix}
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func checkPasst() check {
	if p, err := exec.LookPath("passt"); err == nil {
		return check{ID: "passt", Status: statusOK, Summary: "passt is installed at " + p}
	}
	return check{ID: "passt", Status: statusWarn, Summary: "passt is not installed: --net user falls back to QEMU's slirp (the guest sits behind QEMU's NAT, at 10.0.2.15 and in fec0::/64, and --forward binds IPv4 host addresses only)", Fix: "apt-get install passt"}
}

func checkForwardFirewall() check {
	chains, notice, err := doctor.ForwardBlockers()
	switch {
	case err != nil:
		return check{ID: "forward-firewall", Status: statusUnknown, Summary: fmt.Sprintf("cannot list the nftables ruleset: %v", err), Fix: "run vmrun doctor as root"}
	case len(chains) > 0:
		summary, fix, _ := strings.Cut(notice, "; to let them through: ")
		return check{ID: "forward-firewall", Status: statusWarn, Summary: summary, Fix: fix + " (see docs/nat.md)"}
	}
	return check{ID: "forward-firewall", Status: statusOK, Summary: "no nftables chain drops forwarded packets by policy"}
}

// checkNetworkManager warns when NetworkManager is installed and nothing
// tells it to leave vmr* links alone.
func checkNetworkManager(dir string) check {
	if _, err := os.Stat(dir); err != nil {
		return check{ID: "networkmanager", Status: statusOK, Summary: "NetworkManager is not installed"}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "conf.d", "*.conf"))
	files = append(files, filepath.Join(dir, "NetworkManager.conf"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "interface-name:vmr") {
			return check{ID: "networkmanager", Status: statusOK, Summary: "NetworkManager leaves vmr* links unmanaged (" + f + ")"}
		}
	}
	return check{ID: "networkmanager", Status: statusWarn,
		Summary: "NetworkManager may configure vmrun's links (vmr*): it can add addresses or bring them down under a running guest",
		Fix:     "sudo vmrun setup, or a file in " + filepath.Join(dir, "conf.d") + " with [keyfile] unmanaged-devices+=interface-name:vmr*"}
}

func checkRuntimeDir(root string) check {
	fi, err := os.Stat(root)
	switch {
	case os.IsNotExist(err):
		parent := filepath.Dir(root)
		if unix.Access(parent, unix.W_OK|unix.X_OK) != nil {
			return check{ID: "runtime-dir", Status: statusFail, Summary: fmt.Sprintf("the runtime root %s does not exist and %s is not writable", root, parent), Fix: "set " + rundir.EnvRoot + " to a directory you can write"}
		}
		return check{ID: "runtime-dir", Status: statusOK, Summary: root + " will be created"}
	case err != nil:
		return check{ID: "runtime-dir", Status: statusFail, Summary: fmt.Sprintf("runtime root %s: %v", root, unwrapPath(err)), Fix: "set " + rundir.EnvRoot + " to a directory you can write"}
	case !fi.IsDir():
		return check{ID: "runtime-dir", Status: statusFail, Summary: root + " is not a directory", Fix: "remove it, or set " + rundir.EnvRoot}
	case unix.Access(root, unix.W_OK|unix.X_OK) != nil:
		return check{ID: "runtime-dir", Status: statusFail, Summary: "the runtime root " + root + " is not writable", Fix: "fix its owner, or set " + rundir.EnvRoot}
	case fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0:
		return check{ID: "runtime-dir", Status: statusWarn, Summary: "the runtime root " + root + " is world-writable", Fix: "chmod 0755 " + root}
	}
	return check{ID: "runtime-dir", Status: statusOK, Summary: root + " is usable"}
}

func checkLeftovers(root string) check {
	l, err := gc.Leftovers(root)
	switch {
	case err != nil:
		return check{ID: "leftovers", Status: statusUnknown, Summary: fmt.Sprintf("cannot look for leftovers: %v", err)}
	case len(l) > 0:
		return check{ID: "leftovers", Status: statusWarn, Summary: "leftovers of killed vmruns: " + strings.Join(l, "; "), Fix: "vmrun gc"}
	}
	return check{ID: "leftovers", Status: statusOK, Summary: "nothing for vmrun gc to remove"}
}

// autoVerdict plans --net auto here: ok when it is a layer-2 mode.
func autoVerdict(ctx context.Context) (doctorAuto, bool) {
	cfg := config.Defaults()
	cfg.Kernel, cfg.Name = "/dev/null", "doctor"
	spec, err := cfg.Resolve()
	if err == nil {
		var p netsetup.Plan
		if p, err = planNetwork(ctx, spec); err == nil {
			a := doctorAuto{Mode: string(p.Mode), Parent: p.Parent, Reason: p.Reason, Notice: p.Notice}
			switch p.Mode {
			case netsetup.Bridge, netsetup.Macvtap, netsetup.IPVtap:
				return a, true
			}
			return a, false
		}
	}
	return doctorAuto{Mode: "none", Reason: oneLine(err.Error())}, false
}
