package qga

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Ports are the unix sockets of one VM's agent channel and exec ports.
type Ports struct {
	Agent, Stdout, Stderr string
}

// Command is a command to run in the guest.
type Command struct {
	Argv []string
	// Env are K=V pairs added to the agent's environment.
	Env []string
	// Dir is the working directory ("": the agent's).
	Dir string
	// Stdin, when non-nil, is the command's whole standard input; nil
	// means /dev/null.
	Stdin []byte
	// Stdout and Stderr receive the output as it comes.
	Stdout, Stderr io.Writer
	// NoReap: once the output has ended, return without waiting for the
	// agent to see the wrapper exit (a few ms under TCG); Result.Pending
	// then carries the wrapper's pid for a later command's Forget.
	NoReap bool
	// Forget are pids of earlier commands the agent may still hold (an
	// earlier Result.Pending): their status is asked once this command
	// has started, while the guest starts it, so the agent forgets them.
	Forget []int
}

// Result is how a command ended.
type Result struct {
	// Code is the command's exit code; 128+N when a signal N ended it.
	Code int
	// Ended is true when the command's end was seen (Code is valid).
	Ended bool
	// Streamed is false when the guest could not open the exec ports and
	// the output came from the agent's buffers after the command ended.
	Streamed bool
	// Truncated names the streams the agent cut at its size limit
	// ("stdout", "stderr"); only without streaming.
	Truncated []string
	// Pending are the pids the agent may still hold: this command's
	// wrapper with NoReap, and those of Forget it did not forget yet.
	Pending []int
}

// Limits.
const (
	// MaxStdin is the largest standard input passed to a command: the agent
	// takes it in one JSON message.
	MaxStdin = 16 << 20
	// endWait bounds the wait for the end markers once the agent says the
	// command's process is gone.
	endWait = 5 * time.Second
	// termWait bounds the wait for a command's end after SIGTERM.
	termWait = 10 * time.Second
	// reapWait bounds the wait for the agent to see the wrapper exit after
	// the end markers (it then forgets the process).
	reapWait = 2 * time.Second
)

// ErrTermIgnored is returned when the command, sent SIGTERM because ctx
// ended, did not end within termWait.
var ErrTermIgnored = fmt.Errorf("it did not end within %s of SIGTERM", termWait)

// ErrStdinTooLarge is returned for standard input over MaxStdin.
var ErrStdinTooLarge = fmt.Errorf("standard input is larger than %d MiB", MaxStdin>>20)

// wrapper is the guest-side shell script (POSIX sh: busybox ash, dash,
// bash) guest-exec starts. Arguments: NONCE STDIN(0|1) DIR NENV ENV... ARGV...
// It points the command's stdout and stderr at vmrun's exec ports (found
// by name in sysfs) between begin and end markers, the end marker carrying
// the exit code (128+N for signal N). When the ports cannot be opened it
// runs the command on the agent's own pipes (the output then comes back in
// guest-exec-status). TERM, INT and HUP are passed on to the command.
const wrapper = `n=$1 s=$2 d=$3 k=$4; shift 4
while [ "$k" -gt 0 ]; do export "$1"; shift; k=$((k-1)); done
[ -n "$PATH" ] || export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
[ "$s" = 1 ] || exec </dev/null
o= e= m=
for p in /sys/class/virtio-ports/*; do
	[ -r "$p/name" ] || continue
	read -r x <"$p/name"
	case $x in
	org.vmrun.exec.stdout) o=/dev/${p##*/} ;;
	org.vmrun.exec.stderr) e=/dev/${p##*/} ;;
	esac
done
if [ -c "$o" ] && [ -c "$e" ] && true 2>/dev/null >"$o" && true 2>/dev/null >"$e"; then
	exec 3>"$o" 4>"$e"
	printf '\036vmrun-begin:%s\n' "$n" >&3
	printf '\036vmrun-begin:%s\n' "$n" >&4
	exec >&3 2>&4 3>&- 4>&-
	m=1
fi
if [ -n "$d" ] && ! cd "$d" 2>/dev/null; then
	echo "vmrun exec: --cwd $d: no such directory in the guest" >&2
	r=126
elif ! command -v "$1" >/dev/null 2>&1; then
	echo "vmrun exec: $1: command not found in the guest" >&2
	r=127
else
	exec 5<&0
	"$@" <&5 5<&- &
	c=$!
	exec 5<&-
	trap 'kill -TERM $c 2>/dev/null' TERM INT HUP
	wait $c
	r=$?
	while kill -0 $c 2>/dev/null; do
		wait $c
		r=$?
	done
fi
if [ "$m" = 1 ]; then
	printf '\036vmrun-end:%s:%d\n' "$n" "$r" >&2
	printf '\036vmrun-end:%s:%d\n' "$n" "$r"
fi
exit $r`

// WaitAgent connects to the agent and waits until it answers (bounded by
// ctx). QEMU keeps the request until the guest's agent opens its port.
func WaitAgent(ctx context.Context, path string) (*Client, error) {
	c, err := Dial(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := c.Sync(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Run runs cmd in the guest through the agent on ports.Agent, streaming its
// output through the exec ports, and returns its exit code. When ctx ends
// first, the command is sent SIGTERM and ctx's error is returned, with the
// command's Result when it ended within termWait (Code non-zero), joined to
// ErrTermIgnored when it did not. The caller makes sure only one Run uses a
// VM's ports at a time (QEMU serves one connection per port at a time).
func Run(ctx context.Context, ports Ports, cmd Command) (Result, error) {
	c, err := WaitAgent(ctx, ports.Agent)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	return c.Run(ctx, ports, cmd)
}

// Run is Run on a session that has already synchronised (WaitAgent): it
// saves the second round trip.
func (c *Client) Run(ctx context.Context, ports Ports, cmd Command) (Result, error) {
	// Until the command has started, Forget's pids are all still pending.
	unstarted := Result{Pending: cmd.Forget}
	if len(cmd.Argv) == 0 {
		return unstarted, errors.New("no command to run")
	}
	if len(cmd.Stdin) > MaxStdin {
		return unstarted, ErrStdinTooLarge
	}
	var d net.Dialer
	outConn, err := d.DialContext(ctx, "unix", ports.Stdout)
	if err != nil {
		return unstarted, fmt.Errorf("exec stdout port %s: %w", ports.Stdout, err)
	}
	defer outConn.Close()
	errConn, err := d.DialContext(ctx, "unix", ports.Stderr)
	if err != nil {
		return unstarted, fmt.Errorf("exec stderr port %s: %w", ports.Stderr, err)
	}
	defer errConn.Close()
	return c.run(ctx, cmd, outConn, errConn)
}

// wrapperArgs returns the shell's arguments that run cmd under the wrapper,
// and the run's nonce that marks the ends of its streams.
func wrapperArgs(cmd Command) (args []string, nonce string, err error) {
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, "", err
	}
	nonce = hex.EncodeToString(nb[:])
	stdin := "0"
	if cmd.Stdin != nil {
		stdin = "1"
	}
	args = []string{"-c", wrapper, "vmrun-exec", nonce, stdin, cmd.Dir, strconv.Itoa(len(cmd.Env))}
	return append(append(args, cmd.Env...), cmd.Argv...), nonce, nil
}

func (c *Client) run(ctx context.Context, cmd Command, outConn, errConn net.Conn) (Result, error) {
	args, nonce, err := wrapperArgs(cmd)
	if err != nil {
		return Result{Pending: cmd.Forget}, err
	}
	outS, errS := newStream(cmd.Stdout, nonce), newStream(cmd.Stderr, nonce)
	outDone, errDone := make(chan error, 1), make(chan error, 1)
	var copiers sync.WaitGroup
	copiers.Add(2)
	go func() { defer copiers.Done(); outDone <- copyStream(outConn, outS) }()
	go func() { defer copiers.Done(); errDone <- copyStream(errConn, errS) }()
	defer func() {
		// Unblock the copiers (they may still wait for markers).
		_ = outConn.SetReadDeadline(time.Unix(1, 0))
		_ = errConn.SetReadDeadline(time.Unix(1, 0))
		copiers.Wait()
	}()

	if err := ctx.Err(); err != nil {
		return Result{Pending: cmd.Forget}, err
	}
	// Once asked, the command is started even if ctx ends meanwhile: await
	// then sends it SIGTERM.
	qctx, release := uncut(ctx, termWait)
	pid, err := c.Exec(qctx, ExecRequest{Path: "/bin/sh", Args: args, Input: cmd.Stdin, Capture: true})
	release()
	if err != nil {
		return Result{Pending: cmd.Forget}, err
	}
	pending, err := c.forget(ctx, cmd.Forget, pid)
	if err != nil {
		return Result{Pending: pending}, err
	}
	res, err := c.await(ctx, pid, cmd, outS, errS, outDone, errDone)
	res.Pending = append(pending, res.Pending...)
	return res, err
}

// forget asks the status of earlier commands' pids (not running's, the
// command just started) so that the agent forgets those that ended, and
// returns the others. An agent error means the agent holds no such pid
// (forgotten already, or the guest rebooted). Ctrl-C (ctx) does not cut
// a question short: its answer would be read as the next one's (await
// sends SIGTERM as soon as it starts); an agent that does not answer
// within termWait ends the session.
func (c *Client) forget(ctx context.Context, pids []int, running int) ([]int, error) {
	var pending []int
	for i, p := range pids {
		if p == running {
			continue // the guest reused the pid: it is forgotten
		}
		qctx, cancel := statusContext(ctx)
		st, err := c.Status(qctx, p)
		cancel()
		if err != nil && !errors.Is(err, ErrAgent) {
			return append(pending, pids[i:]...), err
		}
		if err == nil && !st.Exited {
			pending = append(pending, p)
		}
	}
	return pending, nil
}

// await follows the command run as pid until both its streams ended (their
// end markers, or the agent's buffers when the wrapper could not open the
// ports), sending it SIGTERM when ctx ends.
func (c *Client) await(ctx context.Context, pid int, cmd Command, outS, errS *stream, outDone, errDone chan error) (Result, error) {
	// The end markers normally end the run; guest-exec-status is asked
	// now and then (backing off) in case the wrapper dies without them
	// or could not open the ports.
	poll := 50 * time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	var endTimer, giveUp <-chan time.Time
	exited := false
	// After ctx ends the command is sent SIGTERM and its end is still
	// awaited (bounded by termWait), so its own exit code is reported.
	done := ctx.Done()
	for outDone != nil || errDone != nil {
		select {
		case err := <-outDone:
			outDone = nil
			if err != nil && !exited {
				return Result{}, fmt.Errorf("exec stdout port: %w", err)
			}
		case err := <-errDone:
			errDone = nil
			if err != nil && !exited {
				return Result{}, fmt.Errorf("exec stderr port: %w", err)
			}
		case <-done:
			done = nil
			c.signal(pid)
			giveUp = time.After(termWait)
		case <-giveUp:
			return Result{}, errors.Join(ErrTermIgnored, ctx.Err())
		case <-endTimer:
			return Result{}, fmt.Errorf("the command's wrapper ended but its output did not end within %s", endWait)
		case <-timer.C:
			qctx, cancel := statusContext(ctx)
			st, err := c.Status(qctx, pid)
			cancel()
			if err != nil {
				return Result{}, err
			}
			if !st.Exited {
				poll = min(poll*2, time.Second)
				timer.Reset(poll)
				continue
			}
			exited = true
			if !outS.begun && !errS.begun {
				res, err := captured(st, cmd)
				return res, errors.Join(err, ctx.Err())
			}
			endTimer = time.After(endWait)
		}
	}
	// Done by the markers: let the agent forget the process, or leave
	// that to a later command (NoReap).
	res := Result{Code: outS.code, Ended: true, Streamed: true}
	switch {
	case exited:
	case cmd.NoReap:
		res.Pending = []int{pid}
	default:
		c.reap(context.WithoutCancel(ctx), pid)
	}
	return res, ctx.Err()
}

// statusContext returns the context of one status question asked under
// ctx: ctx's end does not cut it short (see uncut), and it is bounded by
// termWait whether ctx ends or not.
func statusContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), termWait)
}

// uncut returns the context of one question to the agent asked under ctx:
// ctx's end does not cut it short, it gives it grace more (then its error
// is ErrNoAnswer). Cut short, its answer would be read as the next
// question's, and a command being started, or polled when Ctrl-C comes,
// would run on without SIGTERM.
func uncut(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	qctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	late := fmt.Errorf("%w within %s", ErrNoAnswer, grace)
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, func() { cancel(late) }) })
	return qctx, func() {
		stop()
		cancel(nil)
	}
}

// captured is the result of a command whose output came back in the
// agent's buffers (the wrapper could not open the exec ports).
func captured(st ExecStatus, cmd Command) (Result, error) {
	res := Result{Code: st.ExitCode, Ended: true}
	if st.Signal != 0 {
		res.Code = 128 + st.Signal
	}
	if _, err := cmd.Stdout.Write(st.Out); err != nil {
		return res, err
	}
	if _, err := cmd.Stderr.Write(st.Err); err != nil {
		return res, err
	}
	if st.OutTruncated {
		res.Truncated = append(res.Truncated, "stdout")
	}
	if st.ErrTruncated {
		res.Truncated = append(res.Truncated, "stderr")
	}
	return res, nil
}

// reap asks for the wrapper's status until the agent has seen it exit.
func (c *Client) reap(ctx context.Context, pid int) {
	ctx, cancel := context.WithTimeout(ctx, reapWait)
	defer cancel()
	wait := time.Millisecond
	for {
		st, err := c.Status(ctx, pid)
		if err != nil || st.Exited {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// signal sends SIGTERM to the wrapper, which passes it on to the command
// (best effort, bounded).
func (c *Client) signal(pid int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kpid, err := c.Exec(ctx, ExecRequest{Path: "/bin/sh", Args: []string{"-c", `kill -TERM "$1"`, "vmrun-kill", strconv.Itoa(pid)}})
	if err == nil {
		c.reap(ctx, kpid)
	}
}
