// Package detach runs vmrun's supervisor in the background: Start runs the
// same vmrun command again as a process of its own (a new session, stdin
// /dev/null) and waits on a readiness pipe, showing the supervisor's
// output meanwhile; the supervisor (FromEnv) says Ready once the VM runs,
// which moves its output to a log file and lets Start return.
package detach

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// envFD names, in the supervisor's environment, the fd of its readiness
// pipe.
const envFD = "VMRUN_SUPERVISOR_FD"

// IsSupervisor reports whether this process is a detached supervisor.
func IsSupervisor() bool {
	_, ok := os.LookupEnv(envFD)
	return ok
}

// Start runs this executable with args (os.Args[1:]) as a detached
// supervisor and copies its stdout and stderr to stdout and stderr until
// it is ready or has exited; one of the stop signals meanwhile is passed
// on to it. It returns the name the supervisor reported when ready, or
// else the supervisor's exit code (its messages were copied).
func Start(args []string, stops []os.Signal, stdout, stderr io.Writer) (name string, code int, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, fmt.Errorf("cannot find vmrun's own executable: %w", err)
	}
	var p [3][2]*os.File // readiness, stdout, stderr: read and write ends
	for i := range p {
		if p[i][0], p[i][1], err = os.Pipe(); err != nil {
			return "", 0, err
		}
		defer p[i][0].Close()
	}
	cmd := exec.Command(self, args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envFD+"=3")
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = p[1][1], p[2][1], []*os.File{p[0][1]}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	for i := range p {
		p[i][1].Close()
	}
	if err != nil {
		return "", 0, fmt.Errorf("start the supervisor: %w", err)
	}
	var wg sync.WaitGroup
	for i, w := range []io.Writer{stdout, stderr} {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = io.Copy(w, p[i+1][0]) }()
	}
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, stops...)
	go func() {
		for sig := range sigc {
			_ = cmd.Process.Signal(sig)
		}
	}()
	ready, _ := io.ReadAll(p[0][0])
	signal.Stop(sigc)
	wg.Wait() // the supervisor closed its output when ready, or exited
	if name := strings.TrimSpace(string(ready)); name != "" {
		return name, 0, cmd.Process.Release()
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); errors.As(err, &ee) && ee.ExitCode() > 0 {
		return "", ee.ExitCode(), nil
	} else if err != nil {
		return "", 0, fmt.Errorf("the supervisor failed: %w", err)
	}
	return "", 0, nil
}

// Supervisor is the detached side: its readiness pipe.
type Supervisor struct {
	ready *os.File
}

// FromEnv returns the readiness pipe of a detached supervisor (nil for a
// vmrun Start did not run), keeping it and its environment variable from
// the processes vmrun starts.
func FromEnv() (*Supervisor, error) {
	v, ok := os.LookupEnv(envFD)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(envFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a file descriptor", envFD, v)
	}
	unix.CloseOnExec(fd)
	return &Supervisor{ready: os.NewFile(uintptr(fd), "readiness")}, nil
}

// Ready moves stdout and stderr to the file log (/dev/null if it cannot be
// opened) and sends name to the waiting Start.
func (s *Supervisor) Ready(log, name string) {
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		f, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	if err == nil {
		_ = unix.Dup3(int(f.Fd()), 1, 0)
		_ = unix.Dup3(int(f.Fd()), 2, 0)
		f.Close()
	}
	fmt.Fprintln(s.ready, name)
	s.ready.Close()
}
