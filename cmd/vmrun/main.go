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
	"github.com/vmrun/vmrun/internal/helptext"
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
		stops := catchStopsEarly(app, args)
		if !helpMayShow(args) {
			dropFlagCategories(app)
		}
		err = app.Run(args)
		stops.release()
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
		Description: helptext.Description,
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
		Before:                 releaseStops,
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

// commit is the commit vmrun was built from: `make build` sets it
// (-ldflags -X main.commit=...); a plain `go build` leaves it to the VCS
// stamp the Go toolchain records, when it records one.
var commit string
