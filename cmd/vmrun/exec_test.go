package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

func TestExecBadInput(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	_, errOut, code := vmrun(t, "exec", "nosuch", "--", "true")
	if code != exitcode.Usage || !strings.Contains(errOut, `no VM named "nosuch" is running`) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("code %d stderr %q", code, errOut)
	}
	// A running VM (its lock held) without an agent socket.
	d, _, err := rundir.Create(root, "noagent")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, errOut, code = vmrun(t, "exec", "noagent", "--", "true")
	if code != exitcode.Usage || !strings.Contains(errOut, "--agent off") {
		t.Fatalf("code %d stderr %q", code, errOut)
	}
}

func TestExecFlagsDryRun(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	d := disk(t)
	share := t.TempDir()
	argv := strings.Join(dryArgv(t, "--disk", d, "--net", "none", "--share", share+":src:ro"), " ")
	for _, want := range []string{"name=org.qemu.guest_agent.0", "name=org.vmrun.exec.stdout", "mount_tag=src", "readonly=on"} {
		if !strings.Contains(argv, want) {
			t.Errorf("argv lacks %q: %s", want, argv)
		}
	}
	argv = strings.Join(dryArgv(t, "--disk", d, "--net", "none", "--agent", "off"), " ")
	if strings.Contains(argv, "virtserialport") {
		t.Errorf("--agent off still adds the agent: %s", argv)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--exec"}, "--exec needs a command"},
		{[]string{"--agent", "off", "--exec", "--", "true"}, "remove --agent off"},
		{[]string{"--agent", "maybe"}, `--agent "maybe"`},
		{[]string{"--share", filepath.Join(share, "missing")}, "does not exist"},
		{[]string{"--share", share + ":bad tag"}, "tag"},
		{[]string{"--share", share + ":a", "--share", share + ":a"}, "used twice"},
		{[]string{"--", "true"}, "unexpected argument"},
	} {
		_, errOut, code := vmrun(t, append([]string{"--disk", d, "--net", "none", "--dry-run"}, tc.args...)...)
		if code != exitcode.Usage || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%q: code %d stderr %q, want 1 and %q", tc.args, code, errOut, tc.msg)
		}
	}
}

func TestExecConfigFile(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ci.yaml")
	yaml := "disk: [" + disk(t) + "]\nnet: none\nexec: [make, -C, /mnt/src, test]\nshare: [src]\ntimestamps: true\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := strings.Join(dryArgv(t, "--config", cfg), " ")
	if !strings.Contains(argv, "path="+filepath.Join(dir, "src")) || !strings.Contains(argv, "mount_tag=src") {
		t.Fatalf("share from the config file (relative to it) missing: %s", argv)
	}
}

// TestFollowStops: the first stop signal ends the session's context; only
// a SIGINT after it (Ctrl-C again) leaves, not `timeout`'s second SIGTERM
// nor a SIGHUP.
func TestFollowStops(t *testing.T) {
	sigc := make(chan os.Signal) // unbuffered: each send is a receipt
	left, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	cancelled := make(chan struct{})
	go followStops(sigc, func() { close(cancelled) }, left, done)
	sigc <- syscall.SIGTERM
	<-cancelled
	for _, s := range []os.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		select {
		case sigc <- s:
		case <-left:
			t.Fatal("left on a second SIGTERM")
		}
	}
	select {
	case <-left:
		t.Fatalf("left on %v", syscall.SIGHUP)
	case sigc <- syscall.SIGINT:
	}
	<-left
}
