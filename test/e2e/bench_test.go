package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/overlay"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/qmp"
)

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// minus is a[i] - b[i] for each i.
func minus(a, b []time.Duration) []time.Duration {
	d := make([]time.Duration, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

// notLater is the share of i, in percent, with a[i] <= b[i].
func notLater(a, b []time.Duration) float64 {
	n := 0
	for i := range a {
		if a[i] <= b[i] {
			n++
		}
	}
	return 100 * float64(n) / float64(len(a))
}

// p90 is the 90th percentile of ds (nearest rank).
func p90(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*9+9)/10-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// medianF is the median of xs (the upper middle one for an even count).
func medianF(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// firstByte reads r and sends, once, the time since start at which its
// first byte came (nothing if r ends first); then it drains r.
func firstByte(r io.Reader, start time.Time) <-chan time.Duration {
	ch := make(chan time.Duration, 1)
	go func() {
		b := make([]byte, 1)
		if n, _ := r.Read(b); n == 1 {
			ch <- time.Since(start)
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return ch
}

// waitByte waits for the first console byte of a started process.
func waitByte(b *testing.B, first <-chan time.Duration, what string) time.Duration {
	select {
	case d := <-first:
		return d
	case <-time.After(bootTimeout):
		b.Fatalf("%s: no console byte within %s", what, bootTimeout)
		return 0
	}
}

// started are the wall times from vmrun's exec until its -v lines say that
// QMP is ready (the handshake: the same event as a bare QEMU's) and that
// the guest runs (QEMU resumed it, after --net auto's NIC was plugged in),
// and until the guest's first console byte reaches vmrun's stdout.
type started struct{ qmp, running, console time.Duration }

// vmrunStart execs vmrun in ns (with the disk's options, --net mode and
// the runtime root runtime) and returns when it got how far (started);
// then it stops the VM. want, when set, is the mode vmrun must have
// planned (--net auto's choice).
func vmrunStart(b *testing.B, ns *testutil.Netns, runtime string, disk []string, mode, want string) (st started) {
	cmd := command(ns, runtime, append(append([]string{"-v"}, disk...), "--net", mode, "--console", "serial", "--name", "bench")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	first := firstByte(stdout, start)
	sc := bufio.NewScanner(stderr)
	planned := ""
	for sc.Scan() {
		if _, p, ok := strings.Cut(sc.Text(), "network plan: "); ok {
			planned, _, _ = strings.Cut(p, " ")
		}
		if strings.Contains(sc.Text(), "QMP ready") {
			st.qmp = time.Since(start)
		}
		if strings.Contains(sc.Text(), "guest running") {
			st.running = time.Since(start)
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if st.running != 0 {
		st.console = waitByte(b, first, "vmrun --net "+mode)
	}
	// Forced stop: no grace period.
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	if err := cmd.Wait(); err != nil || st.qmp == 0 || st.running == 0 {
		b.Fatalf("vmrun --net %s: %v (QMP ready after %s, guest running after %s)", mode, err, st.qmp, st.running)
	}
	if want != "" && planned != want {
		b.Fatalf("vmrun --net %s planned %q, want %s", mode, planned, want)
	}
	return st
}

// bareArgs turns vmrun's --dry-run argv into one a bare run can use:
// without -pidfile (it names vmrun's runtime directory), and with the files
// vmrun would open for QEMU (-add-fd fd=N,set=S,opaque=PATH, used as
// /dev/fdset/S) named by path; a --snapshot overlay vmrun would make
// (opaque=overlay:DISK) is made once, in a file of the benchmark's.
func bareArgs(b *testing.B, argv []string) []string {
	var args []string
	fdset := map[string]string{}
	for i := 1; i < len(argv); i++ {
		switch {
		case argv[i] == "-pidfile":
			i++
			continue
		case argv[i] == "-add-fd" && i+1 < len(argv):
			i++
			if m := regexp.MustCompile(`(?:^|,)set=(\d+),opaque=(.*)$`).FindStringSubmatch(argv[i]); m != nil {
				set := "/dev/fdset/" + m[1]
				if disk, ok := strings.CutPrefix(m[2], "overlay:"); !ok {
					fdset[set] = m[2]
				} else if _, made := fdset[set]; !made { // one file for the set's two fds
					fdset[set] = overlayFile(b, disk)
				}
			}
			continue
		}
		args = append(args, argv[i])
	}
	for i, a := range args {
		for set, path := range fdset {
			args[i] = strings.ReplaceAll(a, set+",", path+",")
			a = args[i]
		}
	}
	return args
}

// overlayFile writes an empty qcow2 overlay for the qcow2 image disk, as
// vmrun makes one for --snapshot, to a file of the benchmark's; it returns
// its path.
func overlayFile(b *testing.B, disk string) string {
	f, err := os.Open(disk)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h, err := config.ReadQcow2Header(f)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "overlay.qcow2")
	ov, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer ov.Close()
	if err := overlay.Write(ov, h.Size); err != nil {
		b.Fatal(err)
	}
	return path
}

// listenerFile makes a listening unix socket in dir and returns its path
// and its fd as a file for QEMU (both closed at the end of the benchmark).
func listenerFile(b *testing.B, dir, name string) (string, *os.File) {
	sock := filepath.Join(dir, name)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	f, err := ln.File()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return sock, f
}

// socketPairEnd returns one end of a socket pair for QEMU, as vmrun passes
// the guest agent's chardev; the other end stays open until the benchmark
// ends.
func socketPairEnd(b *testing.B) *os.File {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "qemu")
	b.Cleanup(func() { mine.Close(); theirs.Close() })
	return theirs
}

// bareQEMUStart starts QEMU (args after the binary) in ns with a listener
// as fd 3 for its monitor, as vmrun passes it, and for the other fds args
// name what vmrun passes (the guest agent's ports: a socket pair's end for
// the agent's client-mode chardev, listeners for the exec ports; without
// them QEMU exits at once). It returns the wall time until the QMP handshake is
// done and, when console is set, until the first byte on QEMU's stdout
// (the serial port; a paused guest is continued first); then it quits.
func bareQEMUStart(b *testing.B, ns *testutil.Netns, qemu string, args []string, console bool) (qmpReady, con time.Duration) {
	qmpReady, con, _ = bareQEMURun(b, ns, nil, qemu, args, console)
	return qmpReady, con
}

// bareQEMURun is bareQEMUStart that also returns the CPU time (user and
// system) QEMU used from its start until it quit (with its starter's, when
// a starter is given: a command, run in place of QEMU, that starts QEMU
// with the descriptors it was given, as startfloor does).
func bareQEMURun(b *testing.B, ns *testutil.Netns, starter []string, qemu string, args []string, console bool) (qmpReady, con, cpu time.Duration) {
	dir := runtimeDir(b)
	sock, f := listenerFile(b, dir, "qmp.sock")
	argv := append(append(slices.Clone(starter), qemu), args...)
	cmd := ns.Command(context.Background(), argv[0], argv[1:]...)
	cmd.ExtraFiles = []*os.File{f}
	for _, a := range args {
		m := regexp.MustCompile(`\bfd=(\d+)\b`).FindStringSubmatch(a)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		for len(cmd.ExtraFiles) < n-2 {
			if strings.Contains(a, "server=on") || len(cmd.ExtraFiles) < n-3 {
				_, lf := listenerFile(b, dir, fmt.Sprintf("fd%d.sock", len(cmd.ExtraFiles)+3))
				cmd.ExtraFiles = append(cmd.ExtraFiles, lf)
			} else {
				// A client-mode chardev (the guest agent's): a connected socket.
				cmd.ExtraFiles = append(cmd.ExtraFiles, socketPairEnd(b))
			}
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	first := firstByte(stdout, start)
	// Generous: QEMU itself takes 0.1 s on a quiet machine, but 30 s ran out
	// on this 2-CPU machine at load 20.
	c, err := qmp.Connect(context.Background(), sock, 3*time.Minute)
	qmpReady = time.Since(start)
	if err == nil && console && slices.Contains(args, "-S") {
		err = c.Cont(context.Background())
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.Fatal(err)
	}
	if console {
		con = waitByte(b, first, "bare QEMU")
	}
	_ = c.Quit(context.Background())
	c.Close()
	_ = cmd.Wait()
	return qmpReady, con, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// handTyped is the command a user would type by hand to boot disk (plus a
// console to time and a monitor on fd 3 to time QMP by); with snapshot,
// snapshot=on keeps the image as it is.
func handTyped(disk string, snapshot bool) []string {
	drive := "file=" + disk
	if snapshot {
		drive += ",snapshot=on"
	}
	return []string{"-m", "512", "-drive", drive, "-nic", "user",
		"-display", "none", "-serial", "stdio",
		"-chardev", "socket,id=qmp,fd=3,server=on,wait=off", "-mon", "chardev=qmp,mode=control"}
}

// dryRun is the part of `vmrun --dry-run --json`'s output the benchmarks
// use.
type dryRun struct{ Argv []string }

// benchArgv returns the dry run of vmrun with --net none on disk for bare
// QEMU to run: with --qemu-privileged, so that QEMU opens the disk by path
// as a user runs it by hand (a confined vmrun argv names fdsets this run
// would lack), and with the accelerator a confined run picks, which the
// benchmarks' vmrun runs use (as root, QEMU would get /dev/kvm where only
// root can open it: KVM for bare QEMU beside TCG for vmrun's).
func benchArgv(b *testing.B, disk string) dryRun {
	args := []string{"--disk", disk, "--snapshot", "--net", "none", "--console", "none", "--name", "bench", "--dry-run", "--json"}
	var confined, dr dryRun
	out, _, code := RunVMRun(b, nil, runtimeDir(b), args...)
	if err := json.Unmarshal([]byte(out), &confined); err != nil || code != 0 {
		b.Fatalf("dry-run: %v %s", err, out)
	}
	accel := regexp.MustCompile(`\baccel=(\w+)`).FindStringSubmatch(strings.Join(confined.Argv, " "))
	if accel == nil {
		b.Fatalf("dry-run: no accel= in %q", confined.Argv)
	}
	out, _, code = RunVMRun(b, nil, runtimeDir(b), append(args, "--qemu-privileged", "--accel", accel[1])...)
	if err := json.Unmarshal([]byte(out), &dr); err != nil || code != 0 {
		b.Fatalf("dry-run --qemu-privileged: %v %s", err, out)
	}
	return dr
}

// BenchmarkQMPReady compares the wall time from exec to a ready QMP
// session and to the guest's first console byte, side by side in one run
// (each figure the median of b.N runs; the rows alternate to share machine
// noise, and all run in one namespace with a veth uplink to a LAN, through
// the same `ip netns exec`): vmrun with --net none and with --net auto
// (macvtap on the veth), bare QEMU with vmrun's own argv (QMP only), the
// same QEMU started by startfloor (the least a program of vmrun's design
// does before the exec: the floor under vmrun's start-up overhead on this
// machine), and the command a user would type by hand. Each vmrun mode keeps one runtime
// root across its runs, as a host keeps /run/vmrun: --net auto's kernel
// probe is then answered from its per-boot cache (an untimed first run
// fills it), as on every start but the first after a boot or a module
// load; "auto-cold" is that first start (a fresh root each run: the probe
// of a throwaway namespace included). vmrun's QMP ready is its -v line
// at the QMP handshake, the event timed for the bare and hand-typed QEMUs;
// its "guest running" line (median-*-running-ms) comes once QEMU resumed
// the guest, which with --net auto is after the NIC's plug over QMP (QEMU
// starts paused while the network is set up: launcher.VM.LateNIC); a
// hand-typed QEMU's guest runs from its start. The first console byte is
// timed for none, auto and the hand-typed command. All of these run with
// --snapshot (snapshot=on by hand), as the image must not change; vmrun
// --net auto and the hand-typed command also run without it, on a copy of
// the image the guests write to (median-*-nosnap-ms). Targets (issue
// 15): QMP ready ≤ bare + 8 ms (none), ≤ bare + 12 ms (auto); vmrun's QMP
// ready and first console byte no later than the hand-typed command's.
// The median of each iteration's difference, vmrun minus bare QEMU
// (median-none-minus-qemu-ms, median-auto-minus-qemu-ms, and to the
// guest running median-auto-running-minus-qemu-ms) and auto minus
// hand-typed (median-auto-minus-hand-*), the floor's over bare QEMU and
// vmrun's over the floor (median-floor-minus-qemu-ms,
// median-none-minus-floor-ms, median-auto-minus-floor-ms), and the share
// of iterations where auto was not later (auto-not-later-nosnap-%),
// compare the two within iterations.
func BenchmarkQMPReady(b *testing.B) {
	testutil.RequireQEMU(b)
	g := testutil.RequireGuest(b)
	l := newLAN(b, false)
	dr := benchArgv(b, g.Test)
	noneRoot, autoRoot := runtimeDir(b), runtimeDir(b)
	snap, written := []string{"--disk", g.Test, "--snapshot"}, copyFile(b, g.Test)
	bareArgv := bareArgs(b, dr.Argv)
	vmrunStart(b, l.Host, autoRoot, snap, "auto", "macvtap")
	floorState := runtimeDir(b)
	floorStarter := []string{buildFloor(b), "--state", floorState, "--disk", g.Test, "--snapshot", "--net", "none",
		"--console", "serial", "--name", "bench", "--"}
	var floor []time.Duration
	var none, auto, cold, bare, hand, noneRun, autoRun, noneCon, autoCon, handCon, autoW, handW []time.Duration
	for i := 0; i < b.N; i++ {
		st := vmrunStart(b, l.Host, noneRoot, snap, "none", "")
		none, noneRun, noneCon = append(none, st.qmp), append(noneRun, st.running), append(noneCon, st.console)
		st = vmrunStart(b, l.Host, autoRoot, snap, "auto", "macvtap")
		auto, autoRun, autoCon = append(auto, st.qmp), append(autoRun, st.running), append(autoCon, st.console)
		cold = append(cold, vmrunStart(b, l.Host, runtimeDir(b), snap, "auto", "macvtap").qmp)
		q, _ := bareQEMUStart(b, l.Host, dr.Argv[0], bareArgv, false)
		bare = append(bare, q)
		q, _, _ = bareQEMURun(b, l.Host, floorStarter, dr.Argv[0], bareArgv, false)
		floor = append(floor, q)
		q, c := bareQEMUStart(b, l.Host, dr.Argv[0], handTyped(g.Test, true), true)
		hand, handCon = append(hand, q), append(handCon, c)
		autoW = append(autoW, vmrunStart(b, l.Host, autoRoot, []string{"--disk", written}, "auto", "macvtap").qmp)
		q, _ = bareQEMUStart(b, l.Host, dr.Argv[0], handTyped(written, false), false)
		handW = append(handW, q)
	}
	// Paired: each iteration's auto against its own hand-typed run, so a
	// stretch of machine noise weighs on both sides of one difference.
	b.ReportMetric(ms(median(minus(none, bare))), "median-none-minus-qemu-ms")
	b.ReportMetric(ms(median(minus(auto, bare))), "median-auto-minus-qemu-ms")
	b.ReportMetric(ms(median(minus(floor, bare))), "median-floor-minus-qemu-ms")
	b.ReportMetric(ms(median(minus(none, floor))), "median-none-minus-floor-ms")
	b.ReportMetric(ms(median(minus(auto, floor))), "median-auto-minus-floor-ms")
	b.ReportMetric(ms(median(minus(autoRun, bare))), "median-auto-running-minus-qemu-ms")
	b.ReportMetric(ms(median(minus(auto, hand))), "median-auto-minus-hand-ms")
	b.ReportMetric(ms(median(minus(autoW, handW))), "median-auto-minus-hand-nosnap-ms")
	b.ReportMetric(notLater(autoW, handW), "auto-not-later-nosnap-%")
	b.ReportMetric(ms(median(autoW)), "median-auto-nosnap-ms")
	b.ReportMetric(ms(median(handW)), "median-hand-nosnap-ms")
	b.ReportMetric(ms(median(none)), "median-none-ms")
	b.ReportMetric(ms(median(auto)), "median-auto-ms")
	b.ReportMetric(ms(median(bare)), "median-qemu-ms")
	b.ReportMetric(ms(median(floor)), "median-floor-ms")
	b.ReportMetric(ms(median(hand)), "median-hand-ms")
	b.ReportMetric(ms(median(none)-median(bare)), "median-none-overhead-ms")
	b.ReportMetric(ms(median(auto)-median(bare)), "median-auto-overhead-ms")
	b.ReportMetric(ms(median(cold)), "median-auto-cold-ms")
	b.ReportMetric(ms(median(cold)-median(bare)), "median-auto-cold-overhead-ms")
	b.ReportMetric(ms(median(noneRun)), "median-none-running-ms")
	b.ReportMetric(ms(median(autoRun)), "median-auto-running-ms")
	b.ReportMetric(ms(median(noneCon)), "median-none-console-ms")
	b.ReportMetric(ms(median(autoCon)), "median-auto-console-ms")
	b.ReportMetric(ms(median(handCon)), "median-hand-console-ms")
	b.ReportMetric(0, "ns/op")
}

// buildFloor builds test/e2e/startfloor as `make build` builds vmrun and
// returns its path.
func buildFloor(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "startfloor")
	build := exec.Command("go", "build", "-trimpath", "-tags", "urfave_cli_no_docs", "-o", bin, "github.com/vmrun/vmrun/test/e2e/startfloor")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building startfloor: %v\n%s", err, out)
	}
	return bin
}

// dropArgs returns argv without the options (flag and value) whose value
// contains one of the substrings.
func dropArgs(argv []string, subs ...string) []string {
	var out []string
	for i := 0; i < len(argv); i++ {
		if i+1 < len(argv) && strings.HasPrefix(argv[i], "-") && slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(argv[i+1], s) }) {
			i++
			continue
		}
		out = append(out, argv[i])
	}
	return out
}

// BenchmarkQEMUArgv measures what vmrun's argv choices cost QEMU's own
// start: exec to QMP ready (wall, median-*-ms) and the CPU time QEMU used
// until it quit right after (user+system, median-*-cpu-ms, which the
// machine's load disturbs much less), for vmrun's argv as an unconfined
// run has it ("argv"), without the guest agent's devices ("noagent"), with
// the seccomp sandbox a confined run adds: vmrun's whole -sandbox set
// ("sandbox") and its base filter alone ("sandbox-on", -sandbox on), and
// with QEMU making the --snapshot overlay itself (snapshot=on on the image,
// "qemu-snapshot", as vmrun did before it made the overlay). The variants
// alternate, b.N runs each.
func BenchmarkQEMUArgv(b *testing.B) {
	testutil.RequireQEMU(b)
	g := testutil.RequireGuest(b)
	ns := testutil.NewNetns(b, "argv")
	dr := benchArgv(b, g.Test)
	argv := bareArgs(b, dr.Argv)
	qemuSnapshot := slices.Clone(argv)
	for i, a := range qemuSnapshot {
		if strings.HasSuffix(a, ",id=disk0") {
			qemuSnapshot[i] = "file=" + strings.ReplaceAll(g.Test, ",", ",,") + ",format=qcow2,snapshot=on,if=virtio,id=disk0"
		}
	}
	variants := []struct {
		name string
		args []string
	}{
		{"argv", argv},
		{"noagent", dropArgs(argv, "virtio-serial", "id=qga", "id=execout", "id=execerr", "virtserialport")},
		{"sandbox", append(slices.Clone(argv), "-sandbox", launcher.SandboxArg)},
		{"sandbox-on", append(slices.Clone(argv), "-sandbox", "on")},
		{"qemu-snapshot", qemuSnapshot},
	}
	wall, cpu := map[string][]time.Duration{}, map[string][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, v := range variants {
			q, _, c := bareQEMURun(b, ns, nil, dr.Argv[0], v.args, false)
			wall[v.name], cpu[v.name] = append(wall[v.name], q), append(cpu[v.name], c)
		}
	}
	for _, v := range variants {
		b.ReportMetric(ms(median(wall[v.name])), "median-"+v.name+"-ms")
		b.ReportMetric(ms(median(cpu[v.name])), "median-"+v.name+"-cpu-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSupervisorRSS boots the test guest b.N times and reads vmrun's
// own resident memory once per boot while it supervises the running VM; it
// reports the median and the largest of those readings. Target ≤ 20 MB.
func BenchmarkSupervisorRSS(b *testing.B) {
	testutil.RequireQEMU(b)
	g := testutil.RequireGuest(b)
	var rss []float64
	for i := 0; i < b.N; i++ {
		vm := Start(b, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--console", "serial", "--name", "bench-rss")
		// Read once the guest is ready: vmrun's set-up is over and it only
		// supervises (no wait for a "steady state" that nothing signals).
		vm.WaitConsole(`VMRUN-GUEST: ready`, bootTimeout)
		st, err := os.ReadFile("/proc/" + strconv.Itoa(vm.PID()) + "/status")
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
				kb, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					b.Fatalf("VmRSS: %v", err)
				}
				rss = append(rss, kb/1024)
			}
		}
		vm.Signal(syscall.SIGTERM)
		if code := vm.Wait(exitTimeout); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
	if len(rss) != b.N {
		b.Fatalf("%d VmRSS readings for %d boots", len(rss), b.N)
	}
	b.ReportMetric(medianF(rss), "median-rss-MB")
	b.ReportMetric(slices.Max(rss), "max-rss-MB")
	b.ReportMetric(0, "ns/op")
}
