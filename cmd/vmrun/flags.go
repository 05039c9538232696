package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
)

// env returns the environment variable of a long option: VMRUN_SHUTDOWN_GRACE.
func env(name string) []string {
	return []string{"VMRUN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

// runFlags returns the options of the run command (fresh values each call:
// urfave/cli flags hold state).
func runFlags() []cli.Flag {
	d := config.Defaults()
	str := func(name, value, usage, category string) *cli.StringFlag {
		return &cli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: env(name), Category: category}
	}
	// A list's environment variable is read by loadConfig, which splits it
	// (see envLists); urfave/cli would take it as a single item.
	list := func(name, usage, category string) *cli.StringSliceFlag {
		return &cli.StringSliceFlag{Name: name, Usage: usage + " [$" + env(name)[0] + ", " + envLists[name].sep + "]", Category: category}
	}
	boolean := func(name, usage, category string) *cli.BoolFlag {
		return &cli.BoolFlag{Name: name, Usage: usage, EnvVars: env(name), Category: category}
	}
	const (
		vmCat  = "VM"
		netCat = "NETWORK"
		runCat = "RUN"
	)
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "read options from this YAML `FILE` (keys = long option names)", EnvVars: env("config"), Category: runCat},
		list("disk", "disk image `FILE` (qcow2 or raw, detected from its contents); repeat for more disks", vmCat),
		boolean("snapshot", "send guest writes to a throwaway overlay (a file with no name in $TMPDIR or /var/tmp, gone when the VM ends); the image is never modified", vmCat),
		str("name", "", "VM `NAME`, unique among running VMs (default: from the disk's file name)", vmCat),
		str("mem", d.Mem, "guest memory `SIZE`, e.g. 512M, 2G", vmCat),
		&cli.IntFlag{Name: "cpus", Value: d.CPUs, Usage: "number of virtual CPUs", EnvVars: env("cpus"), Category: vmCat},
		str("mac", "", "guest `MAC` address (default: stable per VM name, 52:54:00:xx:xx:xx)", vmCat),
		str("kernel", "", "boot this kernel `FILE` directly (with --initrd, --append)", vmCat),
		str("initrd", "", "initramfs `FILE` for --kernel", vmCat),
		str("append", "", "kernel command `LINE` for --kernel", vmCat),
		str("agent", d.Agent, "`on`: give the guest a QEMU guest agent channel (virtio-serial org.qemu.guest_agent.0) and vmrun's exec ports, for vmrun exec and --exec; off: none", vmCat),
		list("share", "export a host directory to the guest over virtio-9p, `HOSTDIR[:TAG][:ro]` (tag: the directory's name); the guest mounts it with mount -t 9p -o trans=virtio TAG /mnt; repeatable", vmCat),
		str("cloud-init", d.CloudInit, "give the guest a cloud-init NoCloud seed (a read-only ISO labelled cidata: hostname = VM name, a user named after you with sudo and your SSH keys, DHCP on its NIC): `auto` (when --ssh-key or --user-data is given, or the disk's file name contains \"cloud\"), on, off, or a DIR holding meta-data and user-data, used as given", vmCat),
		list("ssh-key", "put this SSH public key `FILE` into the seed's user (default: ~/.ssh/*.pub); repeatable; turns --cloud-init auto on", vmCat),
		str("user-data", "", "merge this #cloud-config `FILE` into the seed's user-data: your value wins for each top-level key, your users and ssh_authorized_keys are added to vmrun's; turns --cloud-init auto on", vmCat),
		str("accel", d.Accel, "`auto` (KVM when /dev/kvm is usable and KVM works with -cpu host, otherwise TCG), kvm or tcg", vmCat),
		str("net", d.Net, "network `MODE[:INTERFACE]`: auto, bridge, macvtap, ipvtap, routed, nat, user, none", netCat),
		str("uplink", "", "use this `INTERFACE` as the uplink instead of the default-route one", netCat),
		list("forward", "forward a host port to the guest, `tcp:HOSTPORT:GUESTPORT` (user and nat modes); repeatable", netCat),
		str("nat-subnet", "", "nat: the private network's IPv4 `CIDR` (default: the first of 10.201-254.0.0/24, 172.16-31.201.0/24 no route uses); only the first NAT VM chooses", netCat),
		str("resolv-conf", "", "nat: the guests' DNS forwarder asks the name servers of this `FILE` (default /etc/resolv.conf)", netCat),
		str("guest-ip", "", "the guest's `ADDRESS/PREFIX` (ipvtap and routed modes; routed: vmrun's DHCP hands the guest ADDRESS/32 and takes no lease for it)", netCat),
		str("gateway", "", "the guest's default `GATEWAY` with --guest-ip (not with routed: its gateway is always 169.254.0.1)", netCat),
		boolean("no-host-link", "ipvtap, macvtap, bridge: do not make the guest reachable from this host (no host-side link; on a bridge without an address of this host's, no routes through it)", netCat),
		str("follow-uplink", d.FollowUplink, followUplinkUsage, netCat),
		str("console", d.Console, "`auto` (serial unless a display is available), serial, none or gui", runCat),
		str("serial-log", "", "also write the guest's serial console to `FILE`", runCat),
		str("timeout", "", "stop the VM after `DURATION` (e.g. 10m) and exit with 124", runCat),
		str("shutdown-grace", d.ShutdownGrace, "on stop, give the guest `DURATION` to power off before QEMU is told to quit", runCat),
		str("wait-address", "", "stop the VM and exit with 124 when the guest has no address `DURATION` after QEMU started (the first one is printed when it appears)", runCat),
		str("qemu", d.QEMU, "QEMU `BINARY` to run", runCat),
		list("qemu-arg", "pass `ARG` to QEMU unchanged, after vmrun's own; repeatable", runCat),
		boolean("exec", "run the command given after -- in the guest through its agent once it is up (waiting at most --timeout), power the guest off and exit with the command's code", runCat),
		boolean("timestamps", "prefix each line of --serial-log and of --exec's output with the UTC time", runCat),
		boolean("qemu-privileged", "UNSAFE: run QEMU as vmrun's own user with its privileges (as root: root, every capability) and without QEMU's seccomp sandbox; for the rare device that needs it (see docs/security.md)", runCat),
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "run the VM in the background: print its name once it has started and return (its console: vmrun console NAME, vmrun logs NAME)", EnvVars: env("detach"), Category: runCat},
		boolean("dry-run", "print the network plan and the exact QEMU command line; create nothing", runCat),
		boolean("json", "with --dry-run: print JSON", runCat),
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print each start-up step with its timing", EnvVars: env("verbose"), Category: runCat},
	}
}

// helpMayShow says whether args may ask for help: -h, --help (with or
// without a value) or the word help, anywhere (after -- too: a false yes
// only costs the time dropFlagCategories saves). Help is the only output
// the flags' categories appear in.
func helpMayShow(args []string) bool {
	for _, a := range args[min(1, len(args)):] {
		if a == "help" {
			return true
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "h" || name == "help") {
			return true
		}
	}
	return false
}

// dropFlagCategories takes the categories off the options of app and of
// its commands. urfave/cli groups every categorized option of every
// command by its help line (built with fmt for each option, each run)
// when the app starts, whichever command runs: about 30 of the 500 page
// faults of `vmrun exec`'s or `vmrun ls`'s own start, 3 ms of CPU
// (BenchmarkCLIStart). Parsing never reads a category; only help shows
// them, so realMain keeps them when help may be asked for.
func dropFlagCategories(app *cli.App) {
	flags := [][]cli.Flag{app.Flags}
	for _, c := range app.Commands {
		flags = append(flags, c.Flags)
	}
	for _, fs := range flags {
		for _, f := range fs {
			switch f := f.(type) {
			case *cli.StringFlag:
				f.Category = ""
			case *cli.StringSliceFlag:
				f.Category = ""
			case *cli.BoolFlag:
				f.Category = ""
			case *cli.IntFlag:
				f.Category = ""
			}
		}
	}
}

// loadConfig merges defaults, the config file, the environment and the
// command line (later wins) into a Config.
func loadConfig(c *cli.Context) (config.Config, error) {
	cfg := config.Defaults()
	if path := c.String("config"); path != "" {
		if _, err := config.LoadFile(path, &cfg); err != nil {
			return cfg, exitcode.Wrap(exitcode.Usage, err)
		}
	}
	// A flag is set when given on the command line or through its
	// environment variable; urfave/cli already lets the command line win.
	isSet := setFlags(c)
	strs := map[string]*string{
		"name": &cfg.Name, "mem": &cfg.Mem, "mac": &cfg.MAC, "kernel": &cfg.Kernel,
		"initrd": &cfg.Initrd, "append": &cfg.Append, "accel": &cfg.Accel, "net": &cfg.Net,
		"uplink": &cfg.Uplink, "guest-ip": &cfg.GuestIP, "nat-subnet": &cfg.NATSubnet, "resolv-conf": &cfg.ResolvConf, "gateway": &cfg.Gateway,
		"console": &cfg.Console, "serial-log": &cfg.SerialLog, "timeout": &cfg.Timeout,
		"shutdown-grace": &cfg.ShutdownGrace, "wait-address": &cfg.WaitAddress, "qemu": &cfg.QEMU, "agent": &cfg.Agent,
		"cloud-init": &cfg.CloudInit, "user-data": &cfg.UserData, "follow-uplink": &cfg.FollowUplink,
	}
	for name, p := range strs {
		if isSet[name] {
			*p = c.String(name)
		}
	}
	lists := map[string]*[]string{"disk": &cfg.Disk, "forward": &cfg.Forward, "qemu-arg": &cfg.QEMUArg, "share": &cfg.Share, "ssh-key": &cfg.SSHKey}
	for name, p := range lists {
		if isSet[name] { // on the command line
			*p = c.StringSlice(name)
			continue
		}
		v := os.Getenv(env(name)[0])
		if strings.TrimSpace(v) == "" {
			continue
		}
		items, err := envLists[name].split(v)
		if err != nil {
			return cfg, exitcode.Usagef("%s=%s: %w", env(name)[0], v, err)
		}
		*p = items
	}
	bools := map[string]*bool{"snapshot": &cfg.Snapshot, "no-host-link": &cfg.NoHostLink, "timestamps": &cfg.Timestamps, "qemu-privileged": &cfg.QEMUPrivileged}
	for name, p := range bools {
		if isSet[name] {
			*p = c.Bool(name)
		}
	}
	if isSet["cpus"] {
		cfg.CPUs = c.Int("cpus")
	}
	if c.Bool("exec") {
		// The command follows --; it replaces the config file's exec.
		cfg.Exec = append([]string{}, c.Args().Slice()...)
		return cfg, nil
	}
	if c.NArg() > 0 {
		return cfg, exitcode.Usagef("unexpected argument %q: vmrun takes the disk as --disk %s (see `vmrun --help`)", c.Args().First(), c.Args().First())
	}
	return cfg, nil
}

// setFlags names the flags set on the command line or through their
// environment variables, what c.IsSet says of each, in one pass: IsSet
// searches every flag's names (each through a regexp) for each question,
// which asked for each option was a fifth of vmrun's own instructions at
// start-up (callgrind: 1.54 M of 7.3 M for a --dry-run).
func setFlags(c *cli.Context) map[string]bool {
	set := map[string]bool{}
	for _, name := range c.FlagNames() {
		set[name] = true
	}
	return set
}

// resolve loads and validates the configuration: every problem is a usage
// error (exit 1) found before anything is created.
func resolve(c *cli.Context) (config.Spec, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return config.Spec{}, err
	}
	spec, err := cfg.Resolve()
	if err != nil {
		return config.Spec{}, exitcode.Wrap(exitcode.Usage, err)
	}
	return spec, nil
}

// notifier prints one-line notices on stderr.
func notifier(c *cli.Context) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(c.App.ErrWriter, "vmrun: "+format+"\n", args...)
	}
}

// envLists says how the environment variable of each list option is split
// into items: the separator, as --help shows it, and the splitter.
var envLists = map[string]struct {
	sep   string
	split func(string) ([]string, error)
}{
	"disk":     {"comma-separated", config.SplitCommas},
	"forward":  {"comma-separated", config.SplitCommas},
	"qemu-arg": {"words as a shell splits them", config.SplitWords},
	"share":    {"comma-separated", config.SplitCommas},
	"ssh-key":  {"comma-separated", config.SplitCommas},
}
