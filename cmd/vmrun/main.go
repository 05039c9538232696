// Command vmrun boots a QEMU virtual machine with the right network
// attachment for the host it runs on, supervises it over QMP and removes
// everything it created when it exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/buildinfo"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/hostsetup/setupcmd"
)

func main() {
	// The main goroutine keeps the process's first thread, the one
	// /proc/PID/status describes. Capabilities are raised per thread, only
	// on a thread doing privileged work (a set-up step, or a service's
	// lease change in hostnet.Privileged); without this lock such a
	// goroutine could run on the first thread, and vmrun would show an
	// effective set at that moment while the guest runs.
	runtime.LockOSThread()
	os.Exit(realMain(os.Args, os.Stdout, os.Stderr))
}

// realMain runs the CLI and returns the process exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	var err error
	if len(args) > 1 && args[1] == "exec" {
		// `vmrun exec` parses its own arguments: it skips building the
		// command tree (its flags, defaults and help), which every run of
		// a CI job's commands would pay for.
		err = execMain(context.Background(), args[2:], stdout, stderr)
	} else if sshFast(args) {
		err = sshMain(args[2:], stderr) // the same, for `vmrun ssh NAME ...`
	} else {
		app := newApp(stdout, stderr)
		if !helpMayShow(args) {
			dropFlagCategories(app)
		}
		err = app.Run(args)
	}
	if err != nil && !errors.Is(err, exitcode.ErrSilent) {
		fmt.Fprintf(stderr, "vmrun: %s\n", oneLine(err.Error()))
	}
	return exitcode.Of(err)
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func newApp(stdout, stderr io.Writer) *cli.App {
	// --version only: -v is --verbose.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print vmrun's version (the commit it was built from) and exit", DisableDefaultText: true}
	app := &cli.App{
		Name:        "vmrun",
		Version:     buildinfo.Version(commit),
		Usage:       "boot a QEMU VM with the right network for this host, and leave nothing behind",
		UsageText:   "vmrun [options] --disk IMAGE\n   vmrun COMMAND [options]",
		Description: helpDescription,
		Flags:       runFlags(),
		Action:      runAction,
		Commands: []*cli.Command{
			{
				Name:         "run",
				Usage:        "boot a VM (the same as vmrun without a command)",
				UsageText:    "vmrun run [options] --disk IMAGE",
				Flags:        runFlags(),
				Action:       runAction,
				OnUsageError: usageError,
			},
			execCommand(),
			consoleCommand(),
			logsCommand(),
			lsCommand(),
			stopCommand(),
			waitCommand(),
			sshCommand(),
			gcCommand(),
			netCommand(),
			setupcmd.Command(aclPath, usageError),
			doctorCommand(),
		},
		Writer:                 stdout,
		ErrWriter:              stderr,
		OnUsageError:           usageError,
		ExitErrHandler:         func(*cli.Context, error) {},
		HideHelpCommand:        true,
		UseShortOptionHandling: false,
		// --qemu-arg values carry commas (-fw_cfg name=...,string=...):
		// repeat a list flag instead of separating values with commas.
		DisableSliceFlagSeparator: true,
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "vmrun: unknown command %q: run `vmrun --help` for the commands\n", name)
		},
	}
	return app
}

// usageError turns a flag-parsing error into one sentence and exit code 1.
func usageError(c *cli.Context, err error, _ bool) error {
	msg := strings.TrimPrefix(err.Error(), "flag provided but not defined: ")
	if msg != err.Error() {
		if !strings.HasPrefix(msg, "--") && len(msg) > 2 {
			msg = "-" + msg // urfave/cli reports --bogus as -bogus
		}
		return exitcode.Usagef("unknown flag %s: run `vmrun %s--help` for the flags", msg, cmdPrefix(c))
	}
	return exitcode.Usagef("%w: run `vmrun %s--help` for the flags", err, cmdPrefix(c))
}

func cmdPrefix(c *cli.Context) string {
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		return c.Command.FullName() + " "
	}
	return ""
}

const helpDescription = `Boots IMAGE (qcow2 or raw) under QEMU, attaches the guest to the network the
best way this host allows, shows the guest's serial console, and on exit
(guest power-off, Ctrl-C, vmrun stop, --timeout) removes every link, file and
process it created.

NETWORK MODES (--net MODE[:INTERFACE])
   auto       pick for this host (default): see 'vmrun net plan' for the choice and why
   bridge     a tap on an existing Linux bridge (bridge:br0)
   macvtap    the guest gets its own MAC on a wired interface (macvtap:eth0)
   ipvtap     Wi-Fi: the guest shares the interface's MAC, has its own IP (ipvtap:wlan0)
   routed     the guest gets its own LAN address (leased for it by vmrun, or
              --guest-ip) on a tap routed to the uplink, with proxy ARP (and
              IPv6 by SLAAC with proxy NDP when the uplink has a /64); works on
              any uplink, Wi-Fi included, and this host reaches it (routed:wlan0)
   nat        a private bridge (vmrnat0) behind this host's address, shared by every NAT VM:
              vmrun serves DHCP and DNS, guests reach each other, --forward works
              (--nat-subnet, --resolv-conf); see docs/nat.md
   user       no privileges needed: passt when installed (the guest gets this
              host's addresses, IPv4 and IPv6), else QEMU's slirp (NAT:
              10.0.2.15, and IPv6 in fec0::/64); --forward works with both
   none       no network

EXAMPLES
   vmrun --disk debian.qcow2                          boot, network chosen automatically
   vmrun --disk ci.qcow2 --snapshot --timeout 10m --console none --serial-log ci.log
   vmrun --disk web.qcow2 --net user --forward tcp:8080:80
   vmrun --disk web.qcow2 --net nat --forward tcp:8080:80   reachable on this host's port 8080
   vmrun --disk vm.qcow2 --net bridge:br0 --mem 2G --cpus 2
   vmrun --disk vm.qcow2 --net routed:wlan0 --guest-ip 192.168.1.50/24
   vmrun --disk vm.qcow2 --dry-run                    show the plan and the QEMU command, create nothing
   vmrun --disk ci.qcow2 --snapshot --share ./build:src --exec -- /mnt/src/run-tests
                                                      boot, run the command in the guest, power off, exit with its code
   vmrun exec NAME -- uname -a                        run a command in a running VM (its guest agent)
   vmrun -d --disk vm.qcow2 --name web                start it in the background; then:
   vmrun console web   vmrun logs -f web              its serial console (Ctrl-] detaches), its console log
   vmrun ls        vmrun stop NAME        vmrun gc        vmrun net plan
   sudo vmrun setup    once: members of group vmrun may use bridge/macvtap/routed without root
   vmrun doctor        what this host offers, and how to fix what is missing

CONFIG FILE AND ENVIRONMENT
   Every option can be set in a YAML file (--config FILE; keys are the long
   option names: disk, mem, net, forward, ...) and as an environment variable
   VMRUN_<OPTION> (VMRUN_MEM=2G, VMRUN_NET=user). The command line wins over
   the environment, which wins over the file. Lists in the environment:
   VMRUN_DISK and VMRUN_FORWARD separate items with commas
   (VMRUN_DISK=a.qcow2,b.qcow2); VMRUN_QEMU_ARG holds words split as a
   shell splits them, quotes included (QEMU arguments carry commas):
   VMRUN_QEMU_ARG="-fw_cfg 'name=opt/x,string=a b'".

STOPPING
   Ctrl-C or SIGTERM presses the guest's ACPI power button and waits
   --shutdown-grace for it to power off, then tells QEMU to quit, then kills
   it. A second Ctrl-C, SIGQUIT (Ctrl-\) or 'vmrun stop --force' stops QEMU
   at once.

DETACHED VMS
   vmrun -d ... (--detach) starts the VM in the background: it prints the
   VM's name once QEMU is up and returns; a start-up failure gives the same
   message and exit code as in the foreground. The VM's supervisor runs on
   as a process of its own (its messages go to vmrun.log in the VM's runtime
   directory) and cleans up when the VM stops, as a foreground run does.
   'vmrun console NAME' attaches to its serial console (Ctrl-] detaches),
   'vmrun logs NAME [-f]' prints the console log, 'vmrun stop NAME' stops it.

GUEST AGENT, EXEC AND SHARES
   Every VM gets a QEMU guest agent channel (--agent off removes it): with
   qemu-guest-agent running in the guest, 'vmrun exec NAME -- CMD' runs CMD
   there, streaming its output, and exits with its code; --exec -- CMD does
   the same as a one-shot run (boot, wait for the agent, run, power off).
   --share HOSTDIR[:TAG][:ro] exports a directory (virtio-9p); in the guest:
   mount -t 9p -o trans=virtio,version=9p2000.L TAG /mnt. See docs/exec.md.

EXIT CODES
   With --exec: the command's exit code (128+N for signal N; 127 when it does
   not exist in the guest). vmrun's own codes keep their meaning (2 also
   when the guest agent never answered); a line "vmrun: ..." on stderr says
   that the code is vmrun's.
   0    the guest shut down by itself or on request
   1    usage or configuration error; nothing was created
   2    set-up failure (network, permissions, QEMU could not start), or the guest's network failed while it ran; everything created was removed
   3    QEMU died abnormally
   4    the guest kernel panicked
   124  --timeout expired; the VM was stopped and cleaned up`

// commit is the commit vmrun was built from: `make build` sets it
// (-ldflags -X main.commit=...); a plain `go build` leaves it to the VCS
// stamp the Go toolchain records, when it records one.
var commit string
