package guestwait

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// For is `vmrun wait`: it waits for VM name's address (ssh: one whose
// port 22 answers) at most timeout (0: as long as the VM runs) and returns
// what to print: the address, or the address and port of a forward.
func For(root, name string, ssh bool, timeout time.Duration) (string, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	w, err := New(root, name, ssh, deadline)
	if err != nil {
		return "", err
	}
	defer w.Close()
	a, err := w.WaitPort()
	if err != nil {
		if errors.Is(err, ErrTimeout) {
			return "", exitcode.Wrap(exitcode.Timeout, fmt.Errorf("VM %q: %w after --timeout %s", name, err, timeout))
		}
		return "", err
	}
	if a.Port() == 22 {
		return a.Addr().String(), nil
	}
	return a.String(), nil
}

// ParseArgs returns `vmrun wait`'s VM name and options from its arguments
// (what and timeout as parsed before the name, which they may also
// follow: `vmrun wait NAME --for ssh`).
func ParseArgs(args []string, what string, timeout time.Duration) (name, _ string, _ time.Duration, err error) {
	if len(args) == 0 {
		return "", "", 0, exitcode.Usagef("vmrun wait takes one VM name (see `vmrun ls`)")
	}
	name = args[0]
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
