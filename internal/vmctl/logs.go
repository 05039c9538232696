package vmctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vmrun/vmrun/internal/console"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// DetachedDir returns the runtime directory of the running VM name under
// root when it was started with --detach, which left its file base there
// (the console's socket or log).
func DetachedDir(root, name, base string) (string, error) {
	dir, err := LiveDir(root, name)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, base)); err != nil {
		return "", exitcode.Usagef("VM %q was not started with --detach: its console is on the terminal that started it (and in its --serial-log)", name)
	}
	return dir, nil
}

// PrintLastLog is `vmrun logs NAME` for a detached VM that no longer
// runs: the console log kept from its last run goes to out, after one
// line on errOut saying that it is not running and where vmrun's own
// messages of that run are (supervisorLog, beside it). When no VM of that
// name runs and none was kept, it returns notRunning.
func PrintLastLog(root, name, supervisorLog string, out, errOut io.Writer, notRunning error) error {
	path := lastLog(root, name)
	if path == "" {
		return notRunning
	}
	fmt.Fprintf(errOut, "vmrun: VM %q is not running; its last run's console log follows (vmrun's own messages: %s)\n",
		name, filepath.Join(filepath.Dir(path), supervisorLog))
	return CatLog(out, path)
}

// lastLog returns the console log kept from the last run of the detached
// VM name, when no VM of that name is running and one was kept; else "".
func lastLog(root, name string) string {
	if rundir.ValidateName(name) != nil {
		return ""
	}
	if _, err := LiveDir(root, name); err == nil {
		return ""
	}
	p := filepath.Join(console.LastDir(root, name), console.Log)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// CatLog copies the console log at path to w.
func CatLog(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return exitcode.Setupf("%w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return exitcode.Setupf("console log: %w", err)
	}
	return nil
}

// AttachConsole is `vmrun console NAME`: it connects the terminal (in,
// out) to the serial console of the detached VM name whose runtime
// directory is dir until Ctrl-] or the VM stops, and says which on errOut.
func AttachConsole(name, dir string, in *os.File, out, errOut io.Writer, notify func(string, ...any)) error {
	notify("connected to the console of VM %q; detach with Ctrl-]", name)
	left, err := console.Attach(filepath.Join(dir, console.Socket), in, out)
	if errors.Is(err, console.ErrBusy) {
		return exitcode.Usagef("VM %q: %w (one at a time)", name, err)
	} else if err != nil {
		return exitcode.Setupf("VM %q: %w", name, err)
	}
	if left {
		fmt.Fprintf(errOut, "\r\nvmrun: detached from the console of VM %q\n", name)
	} else {
		fmt.Fprintf(errOut, "\r\nvmrun: the console of VM %q closed: the VM stopped\n", name)
	}
	return nil
}
