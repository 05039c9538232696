package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/qga"
)

// Bounds for the guest agent tests (TCG on a loaded machine).
const (
	agentBoot = 4 * time.Minute // vmrun start to "agent started" on the console
	execWait  = 2 * time.Minute // one vmrun exec
)

// execCmd returns a `vmrun exec` command with the VM's runtime root.
func execCmd(ctx context.Context, runtime string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, vmrunBin, append([]string{"exec"}, args...)...)
	cmd.Env = append(os.Environ(), "VMRUN_RUNTIME_DIR="+runtime)
	return cmd
}

// runExec runs `vmrun exec args...` with stdin and returns stdout, stderr
// and the exit code.
func runExec(t *testing.T, runtime string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execWait)
	defer cancel()
	cmd := execCmd(ctx, runtime, args...)
	var out, errb strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("vmrun exec %v still running after %s", args, execWait)
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("vmrun exec %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// startAgentVM boots the test guest (no network) with a share of dir and
// waits until its qemu-ga runs.
func startAgentVM(t *testing.T, g testutil.GuestImages, name, share string) *VM {
	t.Helper()
	vm := Start(t, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--console", "serial",
		"--name", name, "--share", share+":hostdir", "--timeout", "20m")
	vm.WaitConsole(`VMRUN-GUEST: agent started`, agentBoot)
	vm.WaitConsole(`VMRUN-GUEST: mounted hostdir on /mnt/hostdir`, agentBoot)
	return vm
}

func TestExecInRunningVM(t *testing.T) {
	g := requireQEMUTests(t)
	share := sharedDir(t) // QEMU (nobody here) serves it
	vm := startAgentVM(t, g, "e2e-exec", share)
	rt := vm.Runtime

	t.Run("stdout-stderr-exit", func(t *testing.T) {
		out, errs, code := runExec(t, rt, nil, "e2e-exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
		if out != "out\n" || errs != "err\n" || code != 7 {
			t.Fatalf("got stdout %q stderr %q code %d, want out, err, 7", out, errs, code)
		}
	})
	t.Run("agent-forgets", func(t *testing.T) {
		// vmrun exec does not wait for the agent to see its command's
		// wrapper exit: it leaves the pid in exec.lock, and the next
		// session asks its status, after which the real qemu-ga no longer
		// knows it.
		lock := filepath.Join(rt, "e2e-exec", "exec.lock")
		pids := func() []string {
			b, err := os.ReadFile(lock)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Fields(string(b))
		}
		// Each session leaves its own pid last, after the earlier ones
		// whose wrapper had not yet ended when it asked (a loaded TCG
		// guest can be that slow); the first session's pid must be
		// forgotten within a few sessions, and the file must not grow.
		var own []string
		forgotten := false
		for i := 0; i < 8 && !forgotten; i++ {
			if _, errs, code := runExec(t, rt, nil, "e2e-exec", "--", "true"); code != 0 {
				t.Fatalf("code %d, stderr %q", code, errs)
			}
			p := pids()
			if len(p) == 0 || len(p) > 3 || slices.Contains(own, p[len(p)-1]) {
				t.Fatalf("session %d left pids %q (earlier sessions' own: %q); want this session's new pid last, at most 3 in all", i+1, p, own)
			}
			own = append(own, p[len(p)-1])
			forgotten = i > 0 && !slices.Contains(p, own[0])
		}
		if !forgotten {
			t.Fatalf("the first session's pid %s is still in exec.lock after %d sessions (their own pids: %q)", own[0], len(own), own)
		}
		ctx, cancel := context.WithTimeout(context.Background(), execWait)
		defer cancel()
		c, err := qga.WaitAgent(ctx, filepath.Join(rt, "e2e-exec", "qga.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pid, _ := strconv.Atoi(own[0])
		if st, err := c.Status(ctx, pid); !errors.Is(err, qga.ErrAgent) {
			t.Fatalf("the agent still knows the first command's pid %d: %+v, %v", pid, st, err)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		in := "line one\nline two\n"
		out, errs, code := runExec(t, rt, strings.NewReader(in), "e2e-exec", "--", "cat")
		if out != in || code != 0 {
			t.Fatalf("cat got stdout %q (stderr %q) code %d, want %q", out, errs, code, in)
		}
	})
	t.Run("env-cwd", func(t *testing.T) {
		out, errs, code := runExec(t, rt, nil, "e2e-exec", "--env", "GREETING=hi there", "--cwd", "/proc", "--", "sh", "-c", `echo "$GREETING"; pwd`)
		if out != "hi there\n/proc\n" || code != 0 {
			t.Fatalf("got stdout %q (stderr %q) code %d", out, errs, code)
		}
	})
	t.Run("missing-command", func(t *testing.T) {
		out, errs, code := runExec(t, rt, nil, "e2e-exec", "--", "no-such-command", "x")
		if code != 127 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "no-such-command") {
			t.Fatalf("got stdout %q stderr %q code %d, want one line naming the command and 127", out, errs, code)
		}
	})
	t.Run("signal", func(t *testing.T) {
		_, errs, code := runExec(t, rt, nil, "e2e-exec", "--", "sh", "-c", "kill -KILL $$")
		if code != 128+int(syscall.SIGKILL) {
			t.Fatalf("code %d (stderr %q), want %d", code, errs, 128+int(syscall.SIGKILL))
		}
	})
	t.Run("streaming", func(t *testing.T) {
		// The command prints a line, then waits for a file the test
		// creates in the share only after it has seen that line.
		ctx, cancel := context.WithTimeout(context.Background(), execWait)
		defer cancel()
		cmd := execCmd(ctx, rt, "e2e-exec", "--", "sh", "-c",
			"echo first; while [ ! -e /mnt/hostdir/go ]; do sleep 0.05; done; echo last")
		out := testutil.NewLineBuffer()
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if _, err := out.WaitFor(`(?m)^first$`, execWait); err != nil {
			t.Fatalf("first line not streamed: %v (stdout %q stderr %q)", err, out, errb.String())
		}
		select {
		case err := <-done:
			t.Fatalf("vmrun exec ended (%v) before the test let the command go on", err)
		default:
		}
		if err := os.WriteFile(filepath.Join(share, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("vmrun exec: %v (stderr %q)", err, errb.String())
		}
		if out.String() != "first\nlast\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		// Ctrl-C on vmrun exec: the command gets SIGTERM, and its own
		// exit code (128+15) is vmrun's.
		ctx, cancel := context.WithTimeout(context.Background(), execWait)
		defer cancel()
		cmd := execCmd(ctx, rt, "e2e-exec", "--", "sh", "-c", "echo started; exec sleep 600")
		out := testutil.NewLineBuffer()
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := out.WaitFor(`(?m)^started$`, execWait); err != nil {
			t.Fatalf("%v (stderr %q)", err, errb.String())
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
			t.Fatalf("exit code %d (%v, stderr %q), want %d", code, err, errb.String(), 128+int(syscall.SIGTERM))
		}
	})
	t.Run("timestamps", func(t *testing.T) {
		out, _, code := runExec(t, rt, nil, "e2e-exec", "--timestamps", "--", "echo", "stamped")
		if code != 0 || !regexpMatch(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stamped\n$`, out) {
			t.Fatalf("got %q code %d", out, code)
		}
	})
	t.Run("truncated-without-ports", func(t *testing.T) {
		// A background process that keeps the exec ports open makes the
		// next command fall back to the agent's own buffers (16 MiB).
		_, errs, code := runExec(t, rt, nil, "e2e-exec", "--", "sh", "-c", "sleep 600 &")
		if code != 0 {
			t.Fatalf("starting the port holder: code %d, %q", code, errs)
		}
		out, errs, code := runExec(t, rt, nil, "e2e-exec", "--", "head", "-c", "17000000", "/dev/zero")
		if code != 0 || len(out) != 16<<20 || !strings.Contains(errs, "stdout was truncated") {
			t.Fatalf("got %d bytes, stderr %q, code %d; want 16 MiB and a truncation notice", len(out), errs, code)
		}
	})
	t.Run("interrupted-twice", func(t *testing.T) {
		// A command that survives SIGTERM: the first Ctrl-C sends it,
		// the second leaves at once (exit 2, saying so) instead of after
		// 10 s. The command says on the guest's console that it started
		// and that it got SIGTERM: the events the signals wait for.
		ctx, cancel := context.WithTimeout(context.Background(), execWait)
		defer cancel()
		cmd := execCmd(ctx, rt, "e2e-exec", "--", "sh", "-c",
			`trap 'echo E2E-TWICE-TERMED >/dev/console' TERM; echo "E2E-TWICE-STARTED:$$" >/dev/console; while :; do sleep 1; done`)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := vm.WaitConsole(`E2E-TWICE-STARTED:(\d+)`, execWait)[1]
		defer func() {
			if _, errs, code := runExec(t, rt, nil, "e2e-exec", "--", "kill", "-KILL", pid); code != 0 {
				t.Errorf("killing the left command: code %d, %q", code, errs)
			}
		}()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		vm.WaitConsole(`E2E-TWICE-TERMED`, execWait)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(errb.String(), "interrupted twice: left without waiting for sh") {
			t.Fatalf("exit code %d (%v, stderr %q), want 2 and the leaving said", code, err, errb.String())
		}
	})
	t.Run("not-running", func(t *testing.T) {
		_, errs, code := runExec(t, rt, nil, "no-such-vm", "--", "true")
		if code != 1 || !strings.Contains(errs, `no VM named "no-such-vm" is running`) {
			t.Fatalf("code %d stderr %q", code, errs)
		}
	})

	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(2 * time.Minute); code != 0 {
		t.Fatalf("vmrun exit code %d", code)
	}
	assertEmptyDir(t, rt)
}

// TestExecOneShot: --exec on a snapshot disk with a share holding the
// script; the script's output and exit code come back, the image is
// unchanged, nothing is left behind — with --net user and --net none.
func TestExecOneShot(t *testing.T) {
	g := requireQEMUTests(t)
	for _, netMode := range []string{"user", "none"} {
		t.Run(netMode, func(t *testing.T) {
			share := sharedDir(t) // QEMU (nobody here) serves it
			script := "#!/bin/sh\necho \"hello from $(hostname)\"\necho to-stderr >&2\nexit 5\n"
			if err := os.WriteFile(filepath.Join(share, "job.sh"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			before := fileHash(t, g.Test)
			log := filepath.Join(t.TempDir(), "console.log")
			vm := Start(t, nil, "", "--disk", g.Test, "--snapshot", "--net", netMode, "--name", "e2e-oneshot-"+netMode,
				"--share", share+":ci:ro", "--serial-log", log, "--timestamps", "--timeout", "10m",
				"--exec", "--", "/mnt/ci/job.sh")
			code := vm.Wait(12 * time.Minute)
			if code != 5 {
				t.Fatalf("exit code %d, want the script's 5", code)
			}
			// --timestamps stamps the command's output too.
			if got := vm.Console.String(); !regexpMatch(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z hello from vmrun-test\n$`, got) {
				t.Fatalf("stdout %q", got)
			}
			if !strings.Contains(vm.Stderr.String(), "Z to-stderr\n") {
				t.Fatalf("stderr %q lacks the script's stderr", vm.Stderr.String())
			}
			if after := fileHash(t, g.Test); after != before {
				t.Fatal("the disk image changed under --snapshot")
			}
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if !regexpMatch(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z VMRUN-GUEST: agent started`, string(b)) {
				t.Fatalf("serial log without timestamps:\n%s", b)
			}
			assertEmptyDir(t, vm.Runtime)
		})
	}
}

// TestExecNoAgent: --exec against a guest whose agent never starts ends
// with the documented error (exit 2) within the timeout, naming what never
// came up and showing the last console lines.
func TestExecNoAgent(t *testing.T) {
	g := requireQEMUTests(t)
	start := time.Now()
	vm := Start(t, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--name", "e2e-noagent",
		"--qemu-arg", "-fw_cfg", "--qemu-arg", "name=opt/vmrun/cmdline,string=vmrun.agent=off",
		"--timeout", "150s", "--exec", "--", "true")
	code := vm.Wait(5 * time.Minute)
	errs := vm.Stderr.String()
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, errs)
	}
	if !strings.Contains(errs, "no agent opened the org.qemu.guest_agent.0 port") || !strings.Contains(errs, "VMRUN-GUEST: agent off") {
		t.Fatalf("stderr does not name the missing agent or lacks the console lines:\n%s", errs)
	}
	if strings.Contains(errs, "--timeout 2m30s expired; the VM was stopped") {
		t.Fatalf("the time-out was reported instead of the missing agent:\n%s", errs)
	}
	t.Logf("gave up after %s", time.Since(start).Round(time.Second))
	assertEmptyDir(t, vm.Runtime)
}

// TestExecAgentOff: --exec with --agent off is a usage error; exec on a VM
// without the channel says so.
func TestExecAgentOff(t *testing.T) {
	g := requireQEMUTests(t)
	rt := runtimeDir(t)
	_, errs, code := RunVMRun(t, nil, rt, "--disk", g.Test, "--snapshot", "--agent", "off", "--exec", "--", "true")
	if code != 1 || !strings.Contains(errs, "remove --agent off") {
		t.Fatalf("code %d stderr %q", code, errs)
	}
	vm := Start(t, nil, rt, "--disk", g.Test, "--snapshot", "--net", "none", "--agent", "off", "--name", "e2e-agentoff", "--console", "serial")
	vm.WaitConsole(`VMRUN-GUEST: no agent port`, agentBoot)
	_, errs, code = runExec(t, rt, nil, "e2e-agentoff", "--", "true")
	if code != 1 || !strings.Contains(errs, "started with --agent off") {
		t.Fatalf("code %d stderr %q", code, errs)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(2 * time.Minute)

	// The channel is there but no agent runs in the guest: exec gives up
	// after --timeout with exit 2, saying what to install.
	vm = Start(t, nil, rt, "--disk", g.Test, "--snapshot", "--net", "none", "--name", "e2e-noqga", "--console", "serial",
		"--qemu-arg", "-fw_cfg", "--qemu-arg", "name=opt/vmrun/cmdline,string=vmrun.agent=off")
	vm.WaitConsole(`VMRUN-GUEST: agent off`, agentBoot)
	_, errs, code = runExec(t, rt, nil, "e2e-noqga", "--timeout", "8s", "--", "true")
	if code != 2 || !strings.Contains(errs, "install and start qemu-guest-agent") || !strings.Contains(errs, "waiting for the guest agent") {
		t.Fatalf("code %d stderr %q", code, errs)
	}
	vm.Signal(syscall.SIGTERM)
	vm.Wait(2 * time.Minute)
}

// TestExecOneShotReaderGone: `vmrun --exec CMD | head` — the reader of
// the command's output goes away while the command writes. vmrun is not
// killed by the SIGPIPE: it says what happened, powers the guest off and
// exits 2, leaving nothing behind.
func TestExecOneShotReaderGone(t *testing.T) {
	g := requireQEMUTests(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	runtime := runtimeDir(t)
	cmd := command(nil, runtime, "--disk", g.Test, "--snapshot", "--net", "none", "--name", "e2e-oneshot-pipe", "--timeout", "10m",
		"--exec", "--", "sh", "-c", "i=0; while [ $i -lt 100000 ]; do echo line $i; i=$((i+1)); done")
	cmd.Stdout = w
	vm := startCmd(t, cmd, runtime)
	w.Close()
	if line, err := bufio.NewReader(r).ReadString('\n'); err != nil || line != "line 0\n" {
		t.Fatalf("first line of the command's output %q, %v\n%s", line, err, vm.Stderr)
	}
	r.Close()
	if code := vm.Wait(exitTimeout); code != 2 {
		t.Fatalf("exit code %d, want 2\n%s", code, vm.Stderr)
	}
	if !strings.Contains(vm.Stderr.String(), "sh's output could not be written, its reader has gone") {
		t.Errorf("stderr does not say the output's reader went:\n%s", vm.Stderr)
	}
	assertEmptyDir(t, runtime)
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// TestExecOneShotStopped: a one-shot --exec stopped by SIGTERM before its
// command ends exits 2 (not 0: the command did not succeed), cleanly.
func TestExecOneShotStopped(t *testing.T) {
	g := requireQEMUTests(t)
	vm := Start(t, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--name", "e2e-oneshot-stop",
		"--timeout", "10m", "--exec", "--", "sh", "-c", "echo started; exec sleep 600")
	if _, err := vm.Console.WaitFor(`(?m)^started$`, agentBoot); err != nil {
		t.Fatalf("%v\n--- stderr:\n%s", err, vm.Stderr)
	}
	vm.Signal(syscall.SIGTERM)
	code := vm.Wait(3 * time.Minute)
	if code != 2 || !strings.Contains(vm.Stderr.String(), "stopped on request before the --exec command finished") {
		t.Fatalf("code %d, stderr:\n%s", code, vm.Stderr)
	}
	assertEmptyDir(t, vm.Runtime)
}
