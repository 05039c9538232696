package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/guestwait"
	"github.com/vmrun/vmrun/internal/rundir"
)

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:  "wait",
		Usage: "wait until a running VM's guest has an address (--for address) or an SSH server answers on TCP port 22 of one (--for ssh), and print that address",
		UsageText: "vmrun wait NAME [--for address|ssh] [--timeout DURATION]\n\n" +
			"Exits 0 with the address on stdout (--for ssh on a user-mode guest with a cloud-init seed: 127.0.0.1:PORT, vmrun's forward to its port 22); " +
			"124 when --timeout passed first; 2 when the VM stopped first; 1 when no such VM runs.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "for", Value: "address", Usage: "`WHAT` to wait for: address, or ssh"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION` (default: wait as long as the VM runs)"},
		},
		OnUsageError: usageError,
		Action:       waitAction,
	}
}

func waitAction(c *cli.Context) error {
	name, what, timeout, err := waitArgs(c)
	if err != nil {
		return err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	w, err := guestwait.New(rundir.Root(), name, what == "ssh", deadline)
	if err != nil {
		return err
	}
	defer w.Close()
	a, err := w.WaitPort()
	if err != nil {
		if errors.Is(err, guestwait.ErrTimeout) {
			return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("VM %q: %w after --timeout %s", name, err, timeout))
		}
		return err
	}
	if a.Port() == 22 {
		fmt.Fprintln(c.App.Writer, a.Addr())
	} else {
		fmt.Fprintln(c.App.Writer, a)
	}
	return nil
}

// waitArgs returns wait's VM name and options, which may also follow the
// name (`vmrun wait NAME --for ssh`).
func waitArgs(c *cli.Context) (name, what string, timeout time.Duration, err error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		return "", "", 0, exitcode.Usagef("vmrun wait takes one VM name (see `vmrun ls`)")
	}
	name, what, timeout = args[0], c.String("for"), c.Duration("timeout")
	for rest := args[1:]; len(rest) > 0; rest = rest[1:] {
		flag, value, hasValue := strings.Cut(strings.TrimLeft(rest[0], "-"), "=")
		if !strings.HasPrefix(rest[0], "-") || (flag != "for" && flag != "timeout") {
			return "", "", 0, exitcode.Usagef("vmrun wait: unexpected %q: run `vmrun wait --help`", rest[0])
		}
		if !hasValue {
			if len(rest) < 2 {
				return "", "", 0, exitcode.Usagef("--%s needs a value", flag)
			}
			rest, value = rest[1:], rest[1]
		}
		if flag == "for" {
			what = value
		} else if timeout, err = time.ParseDuration(value); err != nil {
			return "", "", 0, exitcode.Usagef("--timeout %q is not a duration; write e.g. 30s or 2m", value)
		}
	}
	if what != "address" && what != "ssh" {
		return "", "", 0, exitcode.Usagef("--for %q: wait for address or ssh", what)
	}
	if err := rundir.ValidateName(name); err != nil {
		return "", "", 0, exitcode.Usagef("%w", err)
	}
	return name, what, timeout, nil
}
