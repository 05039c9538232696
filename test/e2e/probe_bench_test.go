package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDHCPProbe measures --net auto's DHCP probe (internal/dhcpprobe)
// against the guest's own verdict alone (VMRUN_DHCP_PROBE=off), the two
// alternating, b.N boots each, nothing remembered between them:
//   - on a LAN that drops the guest's MAC: vmrun's start → the guest
//     holding its routed address (median-refused-{probe,verdict}-ms);
//   - on a LAN that answers: vmrun's start → QMP ready
//     (median-answered-qmp-{probe,verdict}-ms) and → the guest's lease
//     (median-answered-lease-{probe,verdict}-ms).
//
// Each boot is a TCG guest's: about 4 minutes for -benchtime 3x on this
// machine, too long for scripts/bench.sh (docs/live-uplink.md gives the
// command and the figures).
func BenchmarkDHCPProbe(b *testing.B) {
	g := requireQEMUTests(b)
	answers := newLAN(b, false)
	refuses := newLAN(b, false)
	cloudLAN(b, refuses)
	d := map[string][]time.Duration{}
	for range b.N {
		for _, probe := range []bool{true, false} {
			v := "verdict"
			if probe {
				v = "probe"
			}
			_, lease := probeBoot(b, refuses, g.Test, probe)
			d["refused-"+v] = append(d["refused-"+v], lease)
			qmp, lease := probeBoot(b, answers, g.Test, probe)
			d["answered-qmp-"+v] = append(d["answered-qmp-"+v], qmp)
			d["answered-lease-"+v] = append(d["answered-lease-"+v], lease)
		}
	}
	for k, v := range d {
		b.ReportMetric(ms(median(v)), "median-"+k+"-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// probeBoot boots the test guest with --net auto on l, with the probe or
// without, and returns the times from vmrun's start to QMP ready and to
// the guest's address on its console. On a refusing LAN, the switch's
// line must name what moved the guest: the probe, or its own verdict.
func probeBoot(b *testing.B, l *lan, disk string, probe bool) (qmp, lease time.Duration) {
	runtime := runtimeDir(b)
	cmd := command(l.Host, runtime, "-v", "--disk", disk, "--snapshot", "--console", "serial", "--name", "bench-probe")
	// A state directory of its own: nothing remembered from the last boot.
	cmd.Env = append(cmd.Env, "VMRUN_STATE_DIR="+b.TempDir())
	if !probe {
		cmd.Env = append(cmd.Env, "VMRUN_DHCP_PROBE=off")
	}
	start := time.Now()
	vm := startCmd(b, cmd, runtime)
	if _, err := vm.Stderr.WaitFor(`QMP ready`, bootTimeout); err != nil {
		b.Fatal(err)
	}
	qmp = time.Since(start)
	if _, err := vm.Console.WaitFor(`VMRUN-GUEST-IP=10\.77\.0\.\d+/`, bootTimeout); err != nil {
		b.Fatalf("no address: %v\n%s", err, vm.lastLines())
	}
	lease = time.Since(start)
	out := vm.Stderr.String()
	switched := strings.Contains(out, "macvtap → routed (")
	byProbe := strings.Contains(out, "macvtap → routed (no DHCP answer to vmrun's probe")
	if switched && byProbe != probe && !strings.Contains(out, "DHCP probe ended after") {
		b.Fatalf("probe %v, but the switch says otherwise:\n%s", probe, out)
	}
	b.Logf("probe %v, LAN %s: QMP ready %.1f ms, address %.1f s, switched %v", probe, l.Uplink, ms(qmp), lease.Seconds(), switched)
	vm.Signal(syscall.SIGQUIT)
	vm.Wait(exitTimeout)
	return qmp, lease
}
