package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// vmrun runs the CLI in-process with a private runtime root.
func vmrun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = realMain(append([]string{"vmrun"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func disk(t *testing.T) string {
	t.Helper()
	head := make([]byte, 1024)
	copy(head, "QFI\xfb\x00\x00\x00\x03")
	p := filepath.Join(t.TempDir(), "web.qcow2")
	if err := os.WriteFile(p, head, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dryArgv returns the argv vmrun would run.
func dryArgv(t *testing.T, args ...string) []string {
	t.Helper()
	out, errOut, code := vmrun(t, append(args, "--dry-run", "--json")...)
	if code != 0 {
		t.Fatalf("dry-run exit %d: %s", code, errOut)
	}
	var dr struct{ Argv []string }
	if err := json.Unmarshal([]byte(out), &dr); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return dr.Argv
}

func argAfter(argv []string, flag string) string {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1]
		}
	}
	return ""
}

func TestPrecedence(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	d := disk(t)
	cfg := filepath.Join(t.TempDir(), "vm.yaml")
	if err := os.WriteFile(cfg, []byte("disk: ["+d+"]\nmem: 1G\ncpus: 3\nnet: none\nname: fromfile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := dryArgv(t, "--config", cfg)
	if argAfter(argv, "-m") != "1024M" || argAfter(argv, "-smp") != "3" || argAfter(argv, "-name") != "fromfile" {
		t.Fatalf("file not applied: %v", argv)
	}
	t.Setenv("VMRUN_MEM", "2G")
	t.Setenv("VMRUN_NAME", "fromenv")
	argv = dryArgv(t, "--config", cfg)
	if argAfter(argv, "-m") != "2048M" || argAfter(argv, "-name") != "fromenv" || argAfter(argv, "-smp") != "3" {
		t.Fatalf("environment does not win over the file: %v", argv)
	}
	argv = dryArgv(t, "--config", cfg, "--mem", "768M")
	if argAfter(argv, "-m") != "768M" || argAfter(argv, "-name") != "fromenv" {
		t.Fatalf("command line does not win over the environment: %v", argv)
	}
	// `vmrun run` is the same command.
	argv = dryArgv(t, "run", "--config", cfg, "--mem", "768M")
	if argAfter(argv, "-m") != "768M" {
		t.Fatalf("vmrun run differs: %v", argv)
	}
}

func TestBadInputs(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	t.Setenv("PATH", os.Getenv("PATH")) // restored after
	d := disk(t)
	empty := filepath.Join(t.TempDir(), "empty.qcow2")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	badCfg := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("memory: 2G\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string // must appear in the one-line message
	}{
		{"missing disk", []string{"--disk", "/nonexistent/a.qcow2"}, exitcode.Usage, "/nonexistent/a.qcow2 does not exist"},
		{"directory disk", []string{"--disk", root}, exitcode.Usage, "is a directory"},
		{"empty disk", []string{"--disk", empty}, exitcode.Usage, "is empty"},
		{"no disk", []string{"--net", "none"}, exitcode.Usage, "nothing to boot"},
		{"unknown flag", []string{"--disk", d, "--bogus"}, exitcode.Usage, "unknown flag --bogus"},
		{"unknown mode", []string{"--disk", d, "--net", "wifi"}, exitcode.Usage, `unknown network mode "wifi"`},
		{"bad mac", []string{"--disk", d, "--mac", "zz"}, exitcode.Usage, `"zz" is not valid`},
		{"multicast mac", []string{"--disk", d, "--mac", "33:33:00:00:00:01"}, exitcode.Usage, "multicast"},
		{"zero mem", []string{"--disk", d, "--mem", "0"}, exitcode.Usage, "--mem"},
		{"negative cpus", []string{"--disk", d, "--cpus", "-1"}, exitcode.Usage, "--cpus -1"},
		{"slash name", []string{"--disk", d, "--name", "a/b"}, exitcode.Usage, `"a/b"`},
		{"long name", []string{"--disk", d, "--name", strings.Repeat("n", 50)}, exitcode.Usage, "at most 40"},
		{"missing qemu flag", []string{"--disk", d, "--net", "none", "--qemu", "/nonexistent/qemu"}, exitcode.Usage, "--qemu /nonexistent/qemu"},
		{"bad config key", []string{"--config", badCfg}, exitcode.Usage, "memory"},
		{"missing config", []string{"--config", "/nonexistent/vm.yaml"}, exitcode.Usage, "/nonexistent/vm.yaml"},
		{"stray argument", []string{d}, exitcode.Usage, "--disk " + d},
		{"stop no name", []string{"stop"}, exitcode.Usage, "one VM name"},
		{"stop unknown", []string{"stop", "ghost"}, exitcode.Usage, `no VM named "ghost"`},
		{"plan unknown mode", []string{"net", "plan", "--net", "wifi"}, exitcode.Usage, "unknown network mode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := vmrun(t, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, errOut)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], c.want) || !strings.HasPrefix(lines[0], "vmrun: ") {
				t.Fatalf("stderr %q: want one line containing %q", errOut, c.want)
			}
			if es, _ := os.ReadDir(root); len(es) != 0 {
				t.Fatalf("left %d entries in the runtime root", len(es))
			}
		})
	}
}

func TestMissingDefaultQEMU(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	t.Setenv("PATH", t.TempDir()) // no qemu-system-x86_64 anywhere
	_, errOut, code := vmrun(t, "--disk", disk(t), "--net", "none")
	if code != exitcode.Setup || !strings.Contains(errOut, "apt-get install qemu-system-x86") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestHelpTeaches(t *testing.T) {
	out, _, code := vmrun(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"EXIT CODES", "124", "NETWORK MODES", "ipvtap", "VMRUN_", "--forward", "--snapshot", "vmrun net plan"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	for _, code := range exitcode.All {
		if !strings.Contains(out, exitcode.Describe(code)) {
			t.Errorf("--help does not describe exit code %d as %q", code, exitcode.Describe(code))
		}
	}
}

// TestVersion: --version prints the build and exits 0; -v stays --verbose.
func TestVersion(t *testing.T) {
	out, errOut, code := vmrun(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "vmrun version ") || errOut != "" {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, _, _ := vmrun(t, "-v", "net", "plan", "--net", "none"); strings.HasPrefix(out, "vmrun version") {
		t.Fatalf("-v printed the version: %q", out)
	}
}

// TestSSHFastPath: `vmrun ssh NAME ...` runs without the command tree
// (sshFast), and says and exits exactly what the tree's `vmrun ssh` does
// (-v first sends it through the tree) for the same arguments.
func TestSSHFastPath(t *testing.T) {
	t.Setenv("VMRUN_RUNTIME_DIR", t.TempDir())
	for _, c := range []struct {
		args []string
		fast bool
	}{
		{[]string{"ssh", "web", "--", "true"}, true},
		{[]string{"ssh", "web", "--timeout", "5s"}, true},
		{[]string{"ssh", "--timeout", "5s", "web"}, false},
		{[]string{"ssh", "--help"}, false},
		{[]string{"ssh", "help"}, false},
		{[]string{"ssh", "h"}, false},
		{[]string{"ssh", "web", "-h"}, false},
		{[]string{"ssh"}, false},
		{[]string{"-v", "ssh", "web"}, false},
	} {
		if got := sshFast(append([]string{"vmrun"}, c.args...)); got != c.fast {
			t.Errorf("sshFast(%q) = %v, want %v", c.args, got, c.fast)
		}
	}
	for _, args := range [][]string{
		{"nosuch", "--", "true"},
		{"web", "--timeout"},
		{"web", "--timeout=0s"},
		{"web", "-x"},
		{"Bad/Name"},
	} {
		fOut, fErr, fCode := vmrun(t, append([]string{"ssh"}, args...)...)
		tOut, tErr, tCode := vmrun(t, append([]string{"-v", "ssh"}, args...)...)
		if fOut != tOut || fErr != tErr || fCode != tCode || fCode == 0 {
			t.Errorf("vmrun ssh %q: fast path %d %q %q, command tree %d %q %q", args, fCode, fOut, fErr, tCode, tOut, tErr)
		}
	}
}
