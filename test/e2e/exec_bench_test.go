package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/qga"
)

// BenchmarkExec measures, in one guest booted once (TCG):
//   - median-exec-ms, p90-exec-ms: `vmrun exec NAME -- true`, the whole CLI
//     round trip (a process started and waited for, as a CI job does);
//   - median-run-ms: the same through qga.Run in-process (protocol and guest only);
//   - median-vmtest-ms: what a vmtest-style client pays for the same command:
//     guest-exec with captured output, then guest-exec-status polled every
//     200 ms, doubling (its floor is 200 ms: the first poll);
//   - median-sync-ms: one guest-sync-delimited round trip on an open session
//     (host, QEMU, the guest's virtio-serial and qemu-ga: the protocol's floor);
//   - median-bare-ms: guest-exec of /bin/true without the wrapper, its
//     status asked again at once until the agent reports it ended (the
//     floor of running any process through the agent under TCG).
//
// Medians over b.N commands each (make bench: 30).
func BenchmarkExec(b *testing.B) {
	g := requireQEMUTests(b)
	vm := Start(b, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--console", "serial", "--name", "bench-exec")
	vm.WaitConsole(`VMRUN-GUEST: agent started`, agentBoot)
	dir := filepath.Join(vm.Runtime, "bench-exec")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// The first command also waits for the agent to be up.
	if _, err := qga.Run(ctx, benchPorts(dir), qga.Command{Argv: []string{"true"}, Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		b.Fatal(err)
	}

	var cli, run, vmtest, sync, bare []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		cmd := execCmd(ctx, vm.Runtime, "bench-exec", "--", "true")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("vmrun exec: %v: %s", err, out)
		}
		cli = append(cli, time.Since(t0))

		t0 = time.Now()
		res, err := qga.Run(ctx, benchPorts(dir), qga.Command{Argv: []string{"true"}, Stdout: io.Discard, Stderr: io.Discard})
		if err != nil || res.Code != 0 {
			b.Fatalf("qga.Run: %+v %v", res, err)
		}
		run = append(run, time.Since(t0))

		t0 = time.Now()
		if err := vmtestStyle(ctx, dir); err != nil {
			b.Fatal(err)
		}
		vmtest = append(vmtest, time.Since(t0))

		s, e, err := agentFloor(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		sync, bare = append(sync, s), append(bare, e)
	}
	b.StopTimer()
	b.ReportMetric(ms(median(cli)), "median-exec-ms")
	b.ReportMetric(ms(p90(cli)), "p90-exec-ms")
	b.ReportMetric(ms(median(run)), "median-run-ms")
	b.ReportMetric(ms(median(vmtest)), "median-vmtest-ms")
	b.ReportMetric(ms(median(sync)), "median-sync-ms")
	b.ReportMetric(ms(median(bare)), "median-bare-ms")
	vm.Signal(syscall.SIGQUIT)
	vm.Wait(2 * time.Minute)
}

func benchPorts(dir string) qga.Ports {
	return qga.Ports{
		Agent:  filepath.Join(dir, "qga.sock"),
		Stdout: filepath.Join(dir, "exec-out.sock"),
		Stderr: filepath.Join(dir, "exec-err.sock"),
	}
}

// vmtestStyle runs /bin/true the way danobi/vmtest does: guest-exec with
// captured output, then guest-exec-status every 200 ms, doubling.
func vmtestStyle(ctx context.Context, dir string) error {
	c, err := qga.WaitAgent(ctx, filepath.Join(dir, "qga.sock"))
	if err != nil {
		return err
	}
	defer c.Close()
	pid, err := c.Exec(ctx, qga.ExecRequest{Path: "/bin/true", Capture: true})
	if err != nil {
		return err
	}
	wait := 200 * time.Millisecond
	for {
		time.Sleep(wait) // the polling being measured, not a synchronisation
		st, err := c.Status(ctx, pid)
		if err != nil {
			return err
		}
		if st.Exited {
			return nil
		}
		wait = min(wait*2, 3200*time.Millisecond)
	}
}

// agentFloor times, on one session, a second guest-sync (the first one
// waits for the agent) and a bare guest-exec of /bin/true followed by
// guest-exec-status until it reports the process ended.
func agentFloor(ctx context.Context, dir string) (sync, bare time.Duration, err error) {
	c, err := qga.WaitAgent(ctx, filepath.Join(dir, "qga.sock"))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	t0 := time.Now()
	if err := c.Sync(ctx); err != nil {
		return 0, 0, err
	}
	sync = time.Since(t0)
	t0 = time.Now()
	pid, err := c.Exec(ctx, qga.ExecRequest{Path: "/bin/true"})
	if err != nil {
		return 0, 0, err
	}
	for {
		st, err := c.Status(ctx, pid)
		if err != nil {
			return 0, 0, err
		}
		if st.Exited {
			return sync, time.Since(t0), nil
		}
	}
}

// BenchmarkAgentReady measures a one-shot `vmrun --exec -- true`: median-agent-ready-ms
// is vmrun's start to the guest agent's first answer (what --exec waits
// for), median-total-ms the whole run, power-off included.
func BenchmarkAgentReady(b *testing.B) {
	g := requireQEMUTests(b)
	re := regexp.MustCompile(`guest agent answered ([0-9.]+)s after the guest started`)
	var ready, total []time.Duration
	for i := 0; i < b.N; i++ {
		rt := runtimeDir(b)
		cmd := command(nil, rt, "-v", "--disk", g.Test, "--snapshot", "--net", "none", "--name", "bench-ready", "--timeout", "10m", "--exec", "--", "true")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdout = io.Discard
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var r time.Duration
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && r == 0 {
				r = time.Since(t0)
			}
		}
		if err := cmd.Wait(); err != nil || r == 0 {
			b.Fatalf("vmrun --exec: %v (agent ready after %s)", err, r)
		}
		ready = append(ready, r)
		total = append(total, time.Since(t0))
		os.RemoveAll(rt)
	}
	b.ReportMetric(ms(median(ready)), "median-agent-ready-ms")
	b.ReportMetric(ms(median(total)), "median-total-ms")
}
