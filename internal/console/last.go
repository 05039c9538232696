package console

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LastDir is where the logs of a detached VM's last run are kept once it
// has stopped: <root>/.last/NAME, beside the runtime directories (a name
// starting with '.' is never a VM's). They stay there until the next run of
// the same name ends, or the runtime root is cleared (at boot: it is on
// tmpfs), so `vmrun logs NAME` can still say why a VM stopped.
func LastDir(root, name string) string { return filepath.Join(root, LastRoot, name) }

// LastRoot is the directory under the runtime root holding LastDir.
const LastRoot = ".last"

// Keep moves files from the runtime directory dir to LastDir(root, name),
// replacing what an earlier run left there. A file the run never wrote is
// skipped. Files still open keep being written where they moved to.
func Keep(root, name, dir string, files ...string) error {
	last := LastDir(root, name)
	if err := os.RemoveAll(last); err != nil {
		return fmt.Errorf("keeping the logs: %w", err)
	}
	if err := os.MkdirAll(last, 0o700); err != nil {
		return fmt.Errorf("keeping the logs: %w", err)
	}
	var errs []error
	for _, f := range files {
		err := os.Rename(filepath.Join(dir, f), filepath.Join(last, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("keeping %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}
