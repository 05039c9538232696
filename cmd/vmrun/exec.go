package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/linetail"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/qga"
	"github.com/vmrun/vmrun/qmp"
)

// The sockets of the agent channel and exec ports in a VM's runtime dir.
const (
	agentSock  = "qga.sock"
	stdoutSock = "exec-out.sock"
	stderrSock = "exec-err.sock"
	execLock   = "exec.lock"
)

// defaultAgentWait bounds the wait for the guest agent when no --timeout
// is given.
const defaultAgentWait = 5 * time.Minute

func execCommand() *cli.Command {
	return &cli.Command{
		Name:  "exec",
		Usage: "run a command in a running VM through its guest agent; exit with the command's code",
		UsageText: "vmrun exec NAME [--env K=V]... [--cwd DIR] [--timeout DURATION] [--timestamps] -- CMD [ARGS...]\n\n" +
			"   --env K=V        add to the command's environment (repeatable)\n" +
			"   --cwd DIR        working directory in the guest\n" +
			"   --timeout DUR    give up after DUR: the command gets SIGTERM, exit 124\n" +
			"   --timestamps     prefix each output line with the UTC time\n\n" +
			"   stdout and stderr stream as they come; stdin is passed when it is not a terminal\n" +
			"   (read to its end first, at most 16 MiB). Ctrl-C sends SIGTERM to the command.\n" +
			"   Exit code: the command's (128+N for signal N, 127 when it does not exist in the\n" +
			"   guest, 126 when --cwd does not); vmrun's own failures: 1 usage (VM not running,\n" +
			"   no agent channel, bad flag), 2 no answer from the guest agent, 124 --timeout.",
		SkipFlagParsing: true,
		Action:          execAction,
	}
}

// execArgs is the parsed command line of `vmrun exec`.
type execArgs struct {
	name       string
	env        []string
	cwd        string
	timeout    time.Duration
	timestamps bool
	argv       []string
	help       bool
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseExecArgs parses NAME, the flags (before or after NAME) and the
// command after "--" (or after NAME and the flags).
func parseExecArgs(args []string) (execArgs, error) {
	var a execArgs
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
			a.argv = args[i+1:]
			i = len(args)
		case flag == "--help" || arg == "-h":
			a.help = true
		case flag == "--env" || arg == "-e":
			v, err := value(&i, "--env")
			if err != nil {
				return a, err
			}
			k, _, ok := strings.Cut(v, "=")
			if !ok || !envName.MatchString(k) {
				return a, exitcode.Usagef("--env %q is not NAME=VALUE", v)
			}
			a.env = append(a.env, v)
		case flag == "--cwd":
			v, err := value(&i, "--cwd")
			if err != nil {
				return a, err
			}
			if !strings.HasPrefix(v, "/") {
				return a, exitcode.Usagef("--cwd %q is not an absolute path in the guest", v)
			}
			a.cwd = v
		case flag == "--timeout":
			v, err := value(&i, "--timeout")
			if err != nil {
				return a, err
			}
			d, err := config.ParseDuration("timeout", v)
			if err != nil {
				return a, exitcode.Wrap(exitcode.Usage, err)
			}
			a.timeout = d
		case flag == "--timestamps":
			a.timestamps = true
		case strings.HasPrefix(arg, "-") && a.name == "":
			return a, exitcode.Usagef("unknown flag %s: run `vmrun exec --help` for the flags", arg)
		case a.name == "":
			a.name = arg
		default:
			// The command starts here (no "--").
			a.argv = args[i:]
			i = len(args)
		}
	}
	if a.help {
		return a, nil
	}
	if a.name == "" {
		return a, exitcode.Usagef("vmrun exec needs a VM name and a command: vmrun exec NAME -- CMD [ARGS...]")
	}
	if len(a.argv) == 0 || a.argv[0] == "" {
		return a, exitcode.Usagef("vmrun exec %s: no command given: write it after --, e.g. vmrun exec %s -- uname -a", a.name, a.name)
	}
	return a, nil
}

func execAction(c *cli.Context) error {
	a, err := parseExecArgs(c.Args().Slice())
	if err != nil {
		return err
	}
	if a.help {
		fmt.Fprintf(c.App.Writer, "NAME:\n   vmrun exec - %s\n\nUSAGE:\n   %s\n\nSee docs/exec.md.\n", c.Command.Usage, c.Command.UsageText)
		return nil
	}
	if err := rundir.ValidateName(a.name); err != nil {
		return exitcode.Usagef("%w", err)
	}
	root := rundir.Root()
	dir := filepath.Join(root, a.name)
	entries, err := rundir.List(root)
	if err != nil {
		return exitcode.Setupf("cannot list %s: %w", root, err)
	}
	live := false
	for _, e := range entries {
		if e.Name == a.name && e.Live {
			live = true
		}
	}
	if !live {
		return exitcode.Usagef("no VM named %q is running (see `vmrun ls`)", a.name)
	}
	if _, err := os.Stat(filepath.Join(dir, agentSock)); err != nil {
		return exitcode.Usagef("VM %q has no guest agent channel (it was started with --agent off): restart it without --agent off", a.name)
	}

	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	unlock, err := lockExec(ctx, dir, a.name, notifier(c))
	if err != nil {
		return err
	}
	defer unlock()

	stdin, err := readStdin(os.Stdin)
	if err != nil {
		return err
	}
	agent, err := waitAgent(ctx, dir, a, notifier(c))
	if err != nil {
		return err
	}
	defer agent.Close()
	out, errw := c.App.Writer, c.App.ErrWriter
	if a.timestamps {
		out, errw = newStampWriter(out), newStampWriter(errw)
	}
	res, err := agent.Run(ctx, ports(dir), qga.Command{Argv: a.argv, Env: a.env, Dir: a.cwd, Stdin: stdin, Stdout: out, Stderr: errw})
	if err != nil && !(res.Ended && errors.Is(ctx.Err(), context.Canceled)) {
		return execError(ctx, a, err)
	}
	// Done, or interrupted (Ctrl-C, SIGTERM): the command got SIGTERM and
	// its own exit code (143 when that ended it) is passed on.
	reportTruncated(notifier(c), res)
	return exitcode.Pass(res.Code)
}

// agentNotice is how long `vmrun exec` waits silently for the agent.
const agentNotice = 5 * time.Second

// waitAgent waits until the VM's guest agent answers: bounded by --timeout,
// or defaultAgentWait, saying after agentNotice what it waits for.
func waitAgent(ctx context.Context, dir string, a execArgs, notify func(string, ...any)) (*qga.Client, error) {
	wait := defaultAgentWait
	if a.timeout > 0 {
		wait = a.timeout
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.AfterFunc(agentNotice, func() {
		notify("waiting for the guest agent in VM %q (at most %s): it has not answered yet", a.name, wait)
	})
	c, err := qga.WaitAgent(wctx, filepath.Join(dir, agentSock))
	t.Stop()
	if err == nil {
		return c, nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, exitcode.Setupf("interrupted while waiting for the guest agent in VM %q", a.name)
	}
	if errors.Is(err, qga.ErrNoAnswer) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, exitcode.Setupf("VM %q: %w within %s: install and start qemu-guest-agent in the guest (it needs the virtio_console driver), or give --timeout for a guest still booting", a.name, ErrAgentNotUp, wait)
	}
	return nil, exitcode.Setupf("VM %q: %w", a.name, err)
}

// ports returns the VM directory's agent and exec sockets.
func ports(dir string) qga.Ports {
	return qga.Ports{
		Agent:  filepath.Join(dir, agentSock),
		Stdout: filepath.Join(dir, stdoutSock),
		Stderr: filepath.Join(dir, stderrSock),
	}
}

// execError explains why `vmrun exec` could not run or finish the command.
func execError(ctx context.Context, a execArgs, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("--timeout %s expired: %s in VM %q was sent SIGTERM", a.timeout, a.argv[0], a.name))
	case ctx.Err() != nil:
		return exitcode.Setupf("interrupted: %s in VM %q was sent SIGTERM and did not end within 10s", a.argv[0], a.name)
	case errors.Is(err, qga.ErrStdinTooLarge):
		return exitcode.Usagef("%w: the guest agent takes it in one message; share the file with --share instead", err)
	case errors.Is(err, qga.ErrAgent):
		return exitcode.Setupf("VM %q: %w", a.name, err)
	}
	return exitcode.Setupf("VM %q: the guest agent could not run the command: %w", a.name, err)
}

// reportTruncated says which output streams the guest agent cut.
func reportTruncated(notify func(string, ...any), res qga.Result) {
	for _, s := range res.Truncated {
		notify("the command's %s was truncated by the guest agent at its 16 MiB limit (the exec ports could not be used)", s)
	}
}

// readStdin returns the whole of stdin when it is not a terminal (nil
// otherwise: the command gets /dev/null).
func readStdin(f *os.File) ([]byte, error) {
	if f == nil || isTerminal(f) {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(f, qga.MaxStdin+1))
	if err != nil || len(b) == 0 {
		return nil, nil // empty, closed or unreadable: the command gets /dev/null
	}
	if len(b) > qga.MaxStdin {
		return nil, exitcode.Usagef("%w: the guest agent takes it in one message; share the file with --share instead", qga.ErrStdinTooLarge)
	}
	return b, nil
}

// lockExec serialises exec sessions on one VM: QEMU serves one connection
// per port.
func lockExec(ctx context.Context, dir, name string, notify func(string, ...any)) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, execLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, exitcode.Setupf("VM %q: exec lock: %w", name, err)
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return func() { f.Close() }, nil
	}
	notify("waiting for another vmrun exec in VM %q to finish", name)
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, exitcode.Setupf("VM %q: exec lock: %w", name, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file drops the lock request with it.
		f.Close()
		return nil, exitcode.Wrap(exitcode.Timeout, fmt.Errorf("VM %q: gave up waiting for another vmrun exec to finish", name))
	}
}

// listenAgent makes the listening sockets of the agent channel and the
// exec ports in the VM's runtime directory; QEMU gets them as fds.
func listenAgent(dir *rundir.Dir) (*launcher.AgentPorts, func() error, error) {
	var lns []*net.UnixListener
	closeAll := func() error {
		for _, ln := range lns {
			ln.Close()
		}
		return nil
	}
	var files []*os.File
	for _, name := range []string{agentSock, stdoutSock, stderrSock} {
		sock, err := dir.Socket(name)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			closeAll()
			return nil, nil, fmt.Errorf("stale socket %s: %w", sock, err)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("agent socket %s: %w", sock, err)
		}
		lns = append(lns, ln)
		f, err := ln.File()
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("agent socket %s: %w", sock, err)
		}
		files = append(files, f)
	}
	return &launcher.AgentPorts{QGA: files[0], Stdout: files[1], Stderr: files[2]}, closeAll, nil
}

// stampWriter prefixes every line with the UTC time (RFC 3339, ms).
type stampWriter struct {
	mu  sync.Mutex
	w   io.Writer
	mid bool // inside a line
	now func() time.Time
}

func newStampWriter(w io.Writer) *stampWriter {
	return &stampWriter{w: w, now: time.Now}
}

func (s *stampWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	var out []byte
	for len(p) > 0 {
		if !s.mid {
			out = s.now().UTC().AppendFormat(out, "2006-01-02T15:04:05.000Z ")
			s.mid = true
		}
		i := indexNL(p)
		if i < 0 {
			out = append(out, p...)
			break
		}
		out = append(out, p[:i+1]...)
		p = p[i+1:]
		s.mid = false
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

func indexNL(p []byte) int {
	for i, b := range p {
		if b == '\n' {
			return i
		}
	}
	return -1
}

// oneShotExec sets opts up for --exec: once the guest runs, wait for its
// agent (bounded by --timeout, or defaultAgentWait), run the command with
// its output on vmrun's stdout and stderr, and let the supervisor power the
// guest off and exit with the command's code.
func oneShotExec(c *cli.Context, spec config.Spec, dir string, tail *linetail.Tail, opts *launcher.Options) {
	var agentOpened atomic.Bool
	prev := opts.Event
	opts.Event = func(ev qmp.Event) {
		if open, _ := ev.Data["open"].(bool); ev.Name == eventVserport && ev.String("id") == launcher.AgentPortID && open {
			agentOpened.Store(true)
		}
		if prev != nil {
			prev(ev)
		}
	}
	type input struct {
		b   []byte
		err error
	}
	// Stdin is read while the guest boots (a CI job's stdin is usually
	// /dev/null or a file).
	stdinc := make(chan input, 1)
	go func() {
		b, err := readStdin(os.Stdin)
		stdinc <- input{b, err}
	}()
	out, errw := c.App.Writer, c.App.ErrWriter
	if spec.Timestamps {
		out, errw = newStampWriter(out), newStampWriter(errw)
	}
	notify := notifier(c)
	opts.Exec = func(ctx context.Context) (int, error) {
		wait := defaultAgentWait
		if spec.Timeout > 0 {
			// A little less than --timeout, so that the agent's absence is
			// what gets reported, not the time-out.
			wait = spec.Timeout - min(spec.Timeout/10, time.Second)
		}
		t0 := time.Now()
		wctx, cancel := context.WithTimeout(ctx, wait)
		client, err := qga.WaitAgent(wctx, filepath.Join(dir, agentSock))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, exitcode.Wrap(exitcode.Setup, agentDiagnosis(wait, tail.Any(), agentOpened.Load(), err))
		}
		defer client.Close()
		if c.Bool("verbose") {
			notify("guest agent answered %.2fs after the guest started", time.Since(t0).Seconds())
		}
		var in input
		select {
		case in = <-stdinc:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if in.err != nil {
			return 0, in.err
		}
		res, err := client.Run(ctx, ports(dir), qga.Command{Argv: spec.Exec, Stdin: in.b, Stdout: out, Stderr: errw})
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if errors.Is(err, qga.ErrAgent) {
				return 0, exitcode.Setupf("--exec: %w", err)
			}
			return 0, exitcode.Setupf("--exec: the guest agent could not run the command: %w", err)
		}
		reportTruncated(notify, res)
		return res.Code, nil
	}
}

// eventVserport is QMP's event for a guest opening or closing a
// virtio-serial port.
const eventVserport = "VSERPORT_CHANGE"

// ErrAgentNotUp is the cause of every "the guest agent never answered" error.
var ErrAgentNotUp = errors.New("the guest agent never answered")

// agentDiagnosis names what never came up: the guest, the agent, or the
// agent's answer.
func agentDiagnosis(wait time.Duration, booted, opened bool, cause error) error {
	switch {
	case !booted:
		return fmt.Errorf("%w within %s: the guest never booted (nothing on its serial console); check the disk image and the boot messages with --console serial", ErrAgentNotUp, wait)
	case !opened:
		return fmt.Errorf("%w within %s: the guest booted but no agent opened the %s port; install and start qemu-guest-agent in the guest (it needs the virtio_console driver), or raise --timeout", ErrAgentNotUp, wait, launcher.AgentPortName)
	}
	return fmt.Errorf("%w within %s: the agent opened its port but did not answer guest-sync (%w)", ErrAgentNotUp, wait, cause)
}
