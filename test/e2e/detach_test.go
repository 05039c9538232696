package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmrun/vmrun/internal/console"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
)

// TestDetachConsoleLogsStop: `vmrun -d` returns with the VM's name once
// it has started, its supervisor running on its own; `vmrun logs -f`
// follows the console; `vmrun console` attaches (a line typed there runs
// in the guest's shell), detaches with Ctrl-] and leaves the VM running;
// `vmrun logs` shows the session; `vmrun stop` stops it, and nothing is
// left: no link, no runtime directory, no supervisor, no QEMU.
func TestDetachConsoleLogsStop(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	before := snapshotLinks(t, l.Host)
	runtime := runtimeDir(t)
	const name = "e2e-detach"
	out, errOut, code := RunVMRun(t, l.Host, runtime, "-d", "--disk", g.Test, "--snapshot", "--net", "macvtap:up0", "--name", name)
	if code != 0 || out != name+"\n" {
		t.Fatalf("vmrun -d: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	pids := detachedPIDs(t, l.Host, runtime, name)
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	logs := startCmd(t, command(l.Host, runtime, "logs", name, "-f"), runtime)
	logs.WaitConsole(`VMRUN-GUEST: ready`, bootTimeout)

	con := command(l.Host, runtime, "console", name)
	in, err := con.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cv := startCmd(t, con, runtime)
	write(t, in, "\n")
	cv.WaitConsole(`press Enter|BusyBox`, bootTimeout)
	write(t, in, "echo con$((6*7))sole\n")
	cv.WaitConsole(`(?m)^con42sole`, bootTimeout)
	write(t, in, "\x1d")
	if code := cv.Wait(exitTimeout); code != 0 || !strings.Contains(cv.Stderr.String(), "detached from the console") {
		t.Fatalf("console after Ctrl-]: exit %d, stderr %s", code, cv.Stderr)
	}
	out, _, code = RunVMRun(t, l.Host, runtime, "logs", name)
	if code != 0 || !strings.Contains(out, "con42sole") {
		t.Fatalf("logs: exit %d:\n%s", code, out)
	}

	if _, errOut, code := RunVMRun(t, l.Host, runtime, "stop", name); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	if code := logs.Wait(exitTimeout); code != 0 || !strings.Contains(logs.Console.String(), "power button pressed") {
		t.Fatalf("logs -f after stop: exit %d, output:\n%s", code, tailLines(logs.Console.String(), 5))
	}
	// Once stopped, `vmrun logs` shows the last run's console log.
	out, errOut, code = RunVMRun(t, l.Host, runtime, "logs", name)
	if code != 0 || !strings.Contains(out, "power button pressed") || !strings.Contains(errOut, "is not running") {
		t.Fatalf("logs after stop: exit %d, stderr %q, stdout:\n%s", code, errOut, tailLines(out, 5))
	}
	if err := os.RemoveAll(filepath.Join(runtime, console.LastRoot)); err != nil {
		t.Fatal(err)
	}
	assertEmptyDir(t, runtime)
	if after := snapshotLinks(t, l.Host); !reflect.DeepEqual(after, before) {
		t.Errorf("links after stop: %v, before: %v", after, before)
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("pid %d still runs after stop", pid)
		}
	}
}

// running reports whether process pid exists and is not a zombie (the
// detached supervisor's parent is init, which reaps it when it can).
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// detachedPIDs returns the pids of the detached VM's supervisor and QEMU,
// checking that `vmrun ls` lists it as running.
func detachedPIDs(t *testing.T, ns *testutil.Netns, runtime, name string) []int {
	t.Helper()
	out, _, code := RunVMRun(t, ns, runtime, "ls", "--json")
	var infos []struct {
		Name, Status string
		PID          int
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil || code != 0 || len(infos) != 1 ||
		infos[0].Name != name || infos[0].Status != "running" || infos[0].PID <= 0 {
		t.Fatalf("ls --json (exit %d, %v): %s", code, err, out)
	}
	st, err := rundir.ReadState(filepath.Join(runtime, name))
	if err != nil || st.PID != infos[0].PID || st.QEMUPID <= 0 {
		t.Fatalf("state of %s: %+v, %v", name, st, err)
	}
	return []int{st.PID, st.QEMUPID}
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}
