package e2e

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
)

// sink receives TCP streams inside a namespace: for each connection it
// reads want bytes, notes how long that took from the first byte, and
// closes the connection (which ends the guest's nc).
type sink struct {
	results chan sinkResult
}

type sinkResult struct {
	bytes int64
	d     time.Duration
	err   error
}

func startSink(tb testing.TB, ns *testutil.Netns, addr string, want int64) *sink {
	tb.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	s := &sink{results: make(chan sinkResult, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
				buf := make([]byte, 1<<16)
				n, err := io.ReadAtLeast(c, buf, 1)
				start := time.Now()
				total := int64(n)
				for err == nil && total < want {
					n, err = c.Read(buf)
					total += int64(n)
				}
				if total >= want {
					err = nil
				}
				s.results <- sinkResult{bytes: total, d: time.Since(start), err: err}
			}()
		}
	}()
	return s
}

// benchLAN is newLAN for benchmarks: host ↔ lan over a veth (optionally
// with the host's end on bridge br0), dnsmasq on the LAN, and a second LAN
// address, 10.77.0.3, for the receiver: 10.77.0.1 is the host's gateway,
// which passt maps to the host itself.
func benchLAN(b *testing.B, bridge bool) *lan {
	b.Helper()
	l := &lan{Host: testutil.NewNetns(b, "bh"), LAN: testutil.NewNetns(b, "bl"), Uplink: "up0"}
	testutil.Veth(b, l.Host, "up0", l.LAN, "lan0")
	l.LAN.MustRun(b, "ip", "addr", "add", "10.77.0.1/24", "dev", "lan0")
	l.LAN.MustRun(b, "ip", "addr", "add", "10.77.0.3/24", "dev", "lan0")
	hostIf := "up0"
	if bridge {
		l.Host.MustRun(b, "ip", "link", "add", "br0", "type", "bridge")
		l.Host.MustRun(b, "ip", "link", "set", "up0", "master", "br0")
		l.Host.MustRun(b, "ip", "link", "set", "br0", "up")
		hostIf = "br0"
	}
	l.Host.MustRun(b, "ip", "addr", "add", "10.77.0.2/24", "dev", hostIf)
	l.Host.MustRun(b, "ip", "route", "add", "default", "via", "10.77.0.1")
	testutil.StartDnsmasq(b, l.LAN, "lan0", "10.77.0.100", "10.77.0.150")
	return l
}

// BenchmarkThroughput boots the test guest b.N times per network mode and
// has it send 32 MiB over TCP to a receiver on the LAN each time: the cost
// of each fallback side by side (TCG guest: absolute figures are low;
// compare the modes). It reports the median of the b.N runs, and the
// lowest and highest; `make bench` runs it with -benchtime=3x.
func BenchmarkThroughput(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireQEMU(b)
	g := testutil.RequireGuest(b)
	const mib = 32
	modes := []struct {
		name   string
		bridge bool
		args   []string
		env    string // VMRUN_PASST value
		needs  string
	}{
		{name: "tap-bridge", bridge: true, args: []string{"--net", "bridge:br0"}},
		{name: "macvtap", args: []string{"--net", "macvtap:up0"}},
		{name: "routed", args: []string{"--net", "routed:up0"}},
		{name: "nat", args: []string{"--net", "nat"}},
		{name: "user-passt", args: []string{"--net", "user"}, needs: "passt"},
		{name: "user-slirp", args: []string{"--net", "user"}, env: "off"},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			if m.needs != "" {
				testutil.RequireCmd(b, m.needs)
			}
			var mbps []float64
			for i := range b.N {
				l := benchLAN(b, m.bridge)
				rt := runtimeDir(b)
				// A mode that cannot even be planned fails the run: a row
				// dropped from the table would hide it.
				if _, errOut, code := RunVMRun(b, l.Host, rt, append([]string{"--disk", g.Test, "--dry-run"}, m.args...)...); code != 0 {
					b.Fatalf("--%s --dry-run: exit %d: %s", strings.Join(m.args, " "), code, strings.TrimSpace(errOut))
				}
				port := 19000 + i
				s := startSink(b, l.LAN, fmt.Sprintf("10.77.0.3:%d", port), mib<<20)
				args := append([]string{"--disk", g.Test, "--snapshot", "--name", "bench-" + m.name, "--console", "serial"}, m.args...)
				args = append(args, probeArgs(fmt.Sprintf("vmrun.send=10.77.0.3:%d:%d", port, mib))...)
				if m.env != "" {
					b.Setenv("VMRUN_PASST", m.env) // vmrun inherits the environment
				}
				vm := Start(b, l.Host, rt, args...)
				vm.WaitConsole(`VMRUN-GUEST-SENT=`, 5*time.Minute)
				r := <-s.results
				if r.err != nil || r.bytes < mib<<20 {
					b.Fatalf("received %d bytes: %v", r.bytes, r.err)
				}
				mbps = append(mbps, float64(r.bytes)*8/r.d.Seconds()/1e6)
				vm.Signal(syscall.SIGTERM)
				if code := vm.Wait(exitTimeout); code != 0 {
					b.Fatalf("exit %d\n%s", code, vm.Stderr)
				}
			}
			b.ReportMetric(medianF(mbps), "median-Mbit/s")
			b.ReportMetric(slices.Min(mbps), "min-Mbit/s")
			b.ReportMetric(slices.Max(mbps), "max-Mbit/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
