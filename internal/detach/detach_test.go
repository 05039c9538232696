package detach

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// roleEnv makes this test binary play a detached supervisor (see TestMain).
const roleEnv = "DETACH_TEST_ROLE"

// TestMain runs the test binary as the supervisor Start starts when
// roleEnv says so: "ready" says what it does on stdout and stderr, becomes
// ready with its output moved to the log named by DETACH_TEST_LOG, and
// writes one more line; "fail" says why on stderr and exits with 3.
func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "ready":
		fmt.Println("to stdout")
		fmt.Fprintln(os.Stderr, "to stderr")
		s, err := FromEnv()
		if err != nil || s == nil || os.Getenv(envFD) != "" {
			fmt.Fprintln(os.Stderr, "FromEnv:", s, err)
			os.Exit(2)
		}
		s.Ready(os.Getenv("DETACH_TEST_LOG"), "vm1")
		fmt.Fprintln(os.Stderr, "after ready")
		os.Exit(0)
	case "fail":
		fmt.Fprintln(os.Stderr, "vmrun: it failed")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestStartReady(t *testing.T) {
	log := filepath.Join(t.TempDir(), "vmrun.log")
	t.Setenv(roleEnv, "ready")
	t.Setenv("DETACH_TEST_LOG", log)
	var out, errb bytes.Buffer
	name, code, err := Start(nil, []os.Signal{syscall.SIGTERM}, &out, &errb)
	if name != "vm1" || code != 0 || err != nil {
		t.Fatalf("Start: %q, %d, %v (stderr %q)", name, code, err, errb.String())
	}
	if out.String() != "to stdout\n" || errb.String() != "to stderr\n" {
		t.Errorf("output before ready: stdout %q, stderr %q", out.String(), errb.String())
	}
	if _, err := os.Stat(log); err != nil {
		t.Errorf("the supervisor's log: %v", err)
	}
}

func TestStartFails(t *testing.T) {
	t.Setenv(roleEnv, "fail")
	var out, errb bytes.Buffer
	name, code, err := Start(nil, []os.Signal{syscall.SIGTERM}, &out, &errb)
	if name != "" || code != 3 || err != nil || strings.TrimSpace(errb.String()) != "vmrun: it failed" {
		t.Fatalf("Start: %q, %d, %v, stderr %q", name, code, err, errb.String())
	}
}

func TestFromEnvForeground(t *testing.T) {
	if s, err := FromEnv(); s != nil || err != nil {
		t.Fatalf("FromEnv without %s: %v, %v", envFD, s, err)
	}
	t.Setenv(envFD, "x")
	if _, err := FromEnv(); err == nil {
		t.Fatal("FromEnv accepted a bad fd")
	}
}
