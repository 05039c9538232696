package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
)

// TestDryRunConfinedQEMU: as root, the dry run shows QEMU confined — the
// disk as an fdset, the runtime directory's label instead of a pid file —
// and --qemu-privileged shows today's command line.
func TestDryRunConfinedQEMU(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	t.Setenv("SUDO_UID", "")
	d := disk(t)
	argv := strings.Join(dryArgv(t, "--disk", d, "--net", "none"), " ")
	for _, want := range []string{"file=/dev/fdset/0,format=qcow2", "set=1,opaque=" + root + "/web"} {
		if !strings.Contains(argv, want) {
			t.Errorf("confined argv lacks %q:\n%s", want, argv)
		}
	}
	// The image read-only and read-write (no --snapshot): two fds in set 0.
	if n := strings.Count(argv, ",set=0,opaque="+d); n != 2 {
		t.Errorf("confined argv passes the disk %d times, want 2:\n%s", n, argv)
	}
	if strings.Contains(argv, "-pidfile") {
		t.Errorf("confined argv has a pid file QEMU could not write:\n%s", argv)
	}
	out, _, code := vmrun(t, "--disk", d, "--net", "none", "--snapshot", "--dry-run")
	if code != 0 || !strings.Contains(out, "QEMU runs as: ") || strings.Contains(out, "QEMU runs as: root") {
		t.Errorf("dry-run (exit %d) does not say who QEMU runs as:\n%s", code, out)
	}
	argv = strings.Join(dryArgv(t, "--disk", d, "--net", "none", "--qemu-privileged"), " ")
	if strings.Contains(argv, "-add-fd") || strings.Contains(argv, "-sandbox") || !strings.Contains(argv, "file="+d) || !strings.Contains(argv, "-pidfile") {
		t.Errorf("--qemu-privileged argv:\n%s", argv)
	}
}

// TestSudoUnreadableDisk: under sudo, a disk the user who ran sudo cannot
// read is a usage error naming the file and the fix; nothing is created.
func TestSudoUnreadableDisk(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	t.Setenv("SUDO_UID", "4242")
	t.Setenv("SUDO_GID", "4242")
	d := disk(t) // in root's 0700 temporary directory
	_, errOut, code := vmrun(t, "--disk", d, "--net", "none")
	if code != exitcode.Usage || strings.Count(strings.TrimSpace(errOut), "\n") != 0 ||
		!strings.Contains(errOut, d+" cannot be read by uid 4242, who ran sudo,") || !strings.Contains(errOut, "--qemu-privileged") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if es, _ := os.ReadDir(root); len(es) != 0 {
		t.Fatalf("left %d entries in the runtime root", len(es))
	}
	t.Setenv("SUDO_UID", "alice")
	if _, errOut, code := vmrun(t, "--disk", d, "--net", "none"); code != exitcode.Usage || !strings.Contains(errOut, "SUDO_UID") {
		t.Fatalf("bad SUDO_UID: exit %d: %s", code, errOut)
	}
}

// TestKernelUnreadableByQEMUUser: as root outside sudo, --kernel goes to
// QEMU as an fd it opens through /proc/self/fd: a kernel in root's private
// directory works when the file itself is readable by QEMU's user, and a
// kernel that file is not (mode 0600) is a usage error naming it and the
// fix, with nothing created.
func TestKernelUnreadableByQEMUUser(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	t.Setenv("SUDO_UID", "")
	kernel := filepath.Join(t.TempDir(), "vmlinuz") // a 0700 directory
	if err := os.WriteFile(kernel, []byte("not really a kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := vmrun(t, "--kernel", kernel, "--net", "none")
	if code != exitcode.Usage || strings.Count(strings.TrimSpace(errOut), "\n") != 0 ||
		!strings.Contains(errOut, "--kernel "+kernel+" cannot be read by") || !strings.Contains(errOut, "--qemu-privileged") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if es, _ := os.ReadDir(root); len(es) != 0 {
		t.Fatalf("left %d entries in the runtime root", len(es))
	}
	argv := strings.Join(dryArgv(t, "--kernel", kernel, "--net", "none"), " ")
	if !strings.Contains(argv, "-kernel /proc/self/fd/") || strings.Contains(argv, kernel) {
		t.Errorf("confined argv does not pass the kernel by fd:\n%s", argv)
	}
}
