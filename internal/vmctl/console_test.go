package vmctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/console"
	"github.com/vmrun/vmrun/internal/exitcode"
)

// TestAttachConsole: the lines `vmrun console` prints when the user
// leaves (here: the end of its input), and the exit code when the VM's
// console is not there.
func TestAttachConsole(t *testing.T) {
	dir := t.TempDir()
	srv, err := console.Serve(filepath.Join(dir, console.Socket))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.Close() // the input ends at once: the user left
	var out, errOut strings.Builder
	var notes []string
	notify := func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }
	if err := AttachConsole("v", dir, r, &out, &errOut, notify); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || notes[0] != `connected to the console of VM "v"; detach with Ctrl-]` {
		t.Errorf("notices: %q", notes)
	}
	if errOut.String() != "\r\nvmrun: detached from the console of VM \"v\"\n" {
		t.Errorf("stderr: %q", errOut.String())
	}
	err = AttachConsole("v", t.TempDir(), r, &out, &errOut, notify)
	if err == nil || exitcode.Of(err) != exitcode.Setup || !strings.HasPrefix(err.Error(), `VM "v": `) {
		t.Errorf("no console socket: %v (exit %d)", err, exitcode.Of(err))
	}
}
