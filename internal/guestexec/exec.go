package guestexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/stamp"
	"github.com/vmrun/vmrun/qga"
)

// Args is the parsed command line of `vmrun exec`.
type Args struct {
	Name       string
	Env        []string // K=V pairs for the command's environment
	Cwd        string   // the working directory in the guest
	Timeout    time.Duration
	Timestamps bool
	Argv       []string
	Help       bool
}

// envName is compiled when first used (vmrun exec --env), not at the start
// of every command.
var envName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })

// `vmrun exec`'s help: `vmrun --help` lists Usage, `vmrun exec --help`
// prints both.
const (
	Usage     = "run a command in a running VM through its guest agent; exit with the command's code"
	UsageText = "vmrun exec NAME [--env K=V]... [--cwd DIR] [--timeout DURATION] [--timestamps] -- CMD [ARGS...]\n\n" +
		"   --env K=V        add to the command's environment (repeatable)\n" +
		"   --cwd DIR        working directory in the guest\n" +
		"   --timeout DUR    give up after DUR: the command gets SIGTERM, exit 124\n" +
		"   --timestamps     prefix each output line with the UTC time\n\n" +
		"   stdout and stderr stream as they come; stdin is passed when it is not a terminal\n" +
		"   (read to its end first, at most 16 MiB). Ctrl-C sends SIGTERM to the command and\n" +
		"   waits for its end (at most 10s); Ctrl-C again leaves without waiting.\n" +
		"   Exit code: the command's (128+N for signal N, 127 when it does not exist in the\n" +
		"   guest, 126 when --cwd does not); vmrun's own failures: 1 usage (VM not running,\n" +
		"   no agent channel, bad flag), 2 no answer from the guest agent or left before the\n" +
		"   command's end, 124 --timeout."
)

// ParseArgs parses NAME, the flags (before or after NAME) and the command
// after "--" (or after NAME and the flags).
func ParseArgs(args []string) (Args, error) {
	var a Args
	value := func(i *int, flag string) (string, error) {
		if _, v, ok := strings.Cut(args[*i], "="); ok {
			return v, nil
		}
		if *i+1 >= len(args) {
			return "", exitcode.Usagef("%s needs a value", flag)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		flag, _, _ := strings.Cut(arg, "=")
		flag = "--" + strings.TrimLeft(flag, "-")
		switch {
		case arg == "--":
			a.Argv = args[i+1:]
			i = len(args)
		case flag == "--help" || arg == "-h":
			a.Help = true
		case flag == "--env" || arg == "-e":
			v, err := value(&i, "--env")
			if err != nil {
				return a, err
			}
			k, _, ok := strings.Cut(v, "=")
			if !ok || !envName().MatchString(k) {
				return a, exitcode.Usagef("--env %q is not NAME=VALUE", v)
			}
			a.Env = append(a.Env, v)
		case flag == "--cwd":
			v, err := value(&i, "--cwd")
			if err != nil {
				return a, err
			}
			if !strings.HasPrefix(v, "/") {
				return a, exitcode.Usagef("--cwd %q is not an absolute path in the guest", v)
			}
			a.Cwd = v
		case flag == "--timeout":
			v, err := value(&i, "--timeout")
			if err != nil {
				return a, err
			}
			d, err := config.ParseDuration("timeout", v)
			if err != nil {
				return a, exitcode.Wrap(exitcode.Usage, err)
			}
			a.Timeout = d
		case flag == "--timestamps":
			a.Timestamps = true
		case strings.HasPrefix(arg, "-") && a.Name == "":
			return a, exitcode.Usagef("unknown flag %s: run `vmrun exec --help` for the flags", arg)
		case a.Name == "":
			a.Name = arg
		default:
			// The command starts here (no "--").
			a.Argv = args[i:]
			i = len(args)
		}
	}
	if a.Help {
		return a, nil
	}
	if a.Name == "" {
		return a, exitcode.Usagef("vmrun exec needs a VM name and a command: vmrun exec NAME -- CMD [ARGS...]")
	}
	if len(a.Argv) == 0 || a.Argv[0] == "" {
		return a, exitcode.Usagef("vmrun exec %s: no command given: write it after --, e.g. vmrun exec %s -- uname -a", a.Name, a.Name)
	}
	return a, nil
}

// Streams are a command's standard input and output.
type Streams struct {
	// Stdin is read to its end before the command starts; nil: the
	// command gets /dev/null (a terminal is not passed).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Run is `vmrun exec`: it runs a.Argv in the running VM whose runtime
// directory is dir, once the other exec sessions on it are done and its
// agent answers, and returns exitcode.Pass of the command's code — or an
// error with vmrun's own. Cancelling ctx (Ctrl-C) sends the command
// SIGTERM and passes its code on.
func Run(ctx context.Context, dir string, a Args, s Streams, notify func(string, ...any)) error {
	if _, err := os.Stat(filepath.Join(dir, agentSock)); err != nil {
		return exitcode.Usagef("VM %q has no guest agent channel (it was started with --agent off): restart it without --agent off", a.Name)
	}
	if a.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.Timeout)
		defer cancel()
	}
	lock, err := lockExec(ctx, dir, a.Name, notify)
	if err != nil {
		return err
	}
	defer lock.Close()

	stdin, err := readStdin(s.Stdin)
	if err != nil {
		return err
	}
	agent, err := waitAgent(ctx, dir, a, notify)
	if err != nil {
		return err
	}
	defer agent.Close()
	out, errw := s.Stdout, s.Stderr
	if a.Timestamps {
		out, errw = stamp.NewWriter(out), stamp.NewWriter(errw)
	}
	// The agent forgets a command's process once asked for its status
	// after it ended: rather than wait for that at the end (a few ms under
	// TCG), the next session asks while its own command starts.
	forget := pendingPIDs(lock)
	res, err := agent.Run(ctx, ports(dir), qga.Command{
		Argv: a.Argv, Env: a.Env, Dir: a.Cwd, Stdin: stdin, Stdout: out, Stderr: errw,
		NoReap: true, Forget: forget,
	})
	if !slices.Equal(forget, res.Pending) {
		savePending(lock, res.Pending)
	}
	if err != nil && !(res.Ended && errors.Is(ctx.Err(), context.Canceled)) {
		return execError(ctx, a, err)
	}
	// Done, or interrupted (Ctrl-C, SIGTERM): the command got SIGTERM and
	// its own exit code (143 when that ended it) is passed on.
	reportTruncated(notify, res)
	return exitcode.Pass(res.Code)
}

// agentNotice is how long `vmrun exec` waits silently for the agent.
const agentNotice = 5 * time.Second

// waitAgent waits until the VM's guest agent answers: bounded by --timeout,
// or defaultAgentWait, saying after agentNotice what it waits for.
func waitAgent(ctx context.Context, dir string, a Args, notify func(string, ...any)) (*qga.Client, error) {
	wait := defaultAgentWait
	if a.Timeout > 0 {
		wait = a.Timeout
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.AfterFunc(agentNotice, func() {
		notify("waiting for the guest agent in VM %q (at most %s): it has not answered yet", a.Name, wait)
	})
	c, err := qga.WaitAgent(wctx, filepath.Join(dir, agentSock))
	t.Stop()
	if err == nil {
		return c, nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, exitcode.Setupf("interrupted while waiting for the guest agent in VM %q", a.Name)
	}
	if errors.Is(err, qga.ErrNoAnswer) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, exitcode.Setupf("VM %q: %w within %s: install and start qemu-guest-agent in the guest (it needs the virtio_console driver), or give --timeout for a guest still booting", a.Name, ErrAgentNotUp, wait)
	}
	return nil, exitcode.Setupf("VM %q: %w", a.Name, err)
}

// execError explains why `vmrun exec` could not run or finish the command.
func execError(ctx context.Context, a Args, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("--timeout %s expired: %s in VM %q was sent SIGTERM", a.Timeout, a.Argv[0], a.Name))
	case ctx.Err() != nil && errors.Is(err, qga.ErrTermIgnored):
		return exitcode.Setupf("interrupted: %s in VM %q: %w", a.Argv[0], a.Name, qga.ErrTermIgnored)
	case ctx.Err() != nil:
		return exitcode.Setupf("interrupted: the guest agent could not follow %s in VM %q to its end: %w", a.Argv[0], a.Name, err)
	case errors.Is(err, qga.ErrStdinTooLarge):
		return exitcode.Usagef("%w: the guest agent takes it in one message; share the file with --share instead", err)
	case errors.Is(err, qga.ErrAgent):
		return exitcode.Setupf("VM %q: %w", a.Name, err)
	}
	return exitcode.Setupf("VM %q: the guest agent could not run the command: %w", a.Name, err)
}
