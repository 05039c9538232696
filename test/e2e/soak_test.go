package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
)

// The crash-injection soak (issue 9, point 6). For each network mode it
// starts vmrun in a host namespace of its own, kills it at a random moment
// of set-up, run or teardown (SIGKILL, or SIGTERM and SIGKILL a random few
// hundred milliseconds later), then either runs `vmrun gc` or starts the
// same --name again (and stops that run cleanly), and checks the host
// namespace against its state before the first round: links, addresses,
// routes, proxy and permanent neighbour entries, nft tables, the sysctls
// vmrun touches, processes and the runtime directory. In the "detached"
// phase vmrun runs with --detach and its detached supervisor is killed
// after `vmrun -d` returned. Any difference fails
// the round, naming what was left (or lost).
//
// SOAK_ROUNDS sets the rounds per mode (default soakCIRounds, which fits
// CI's budget; `make soak` runs 1000). SOAK_SEED replays a run (each round's
// choices depend on the seed, the mode and the round number only), SOAK_MODES
// (comma-separated) and SOAK_ROUND (one round number) narrow it down;
// SOAK_DURATION (e.g. 2h) starts no round after that time has passed.
const soakCIRounds = 20

// soakStepLine is one `-v` step line of vmrun: the set-up markers a kill
// is timed on.
var soakStepLine = regexp.MustCompile(`^vmrun: +[0-9]+\.[0-9]ms `)

// soakMode is one network mode under the soak.
type soakMode struct {
	name string
	// setup makes the namespaces; it returns the LAN.
	setup func(t *testing.T) *lan
	// args are the mode's vmrun arguments for one round.
	args func(rng *rand.Rand) []string
	// switches: the mode's rounds kill vmrun during a live switch of the
	// guest's attachment (soak_switch_test.go), not in the phases above.
	switches bool
}

func soakModes(t *testing.T) []soakMode {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.77.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []soakMode{
		{name: "bridge", setup: func(t *testing.T) *lan { return newLAN(t, true) },
			args: func(*rand.Rand) []string { return []string{"--net", "bridge:br0"} }},
		{name: "macvtap", setup: func(t *testing.T) *lan { return newLAN(t, false) },
			args: func(*rand.Rand) []string { return []string{"--net", "macvtap:up0"} }},
		// --net auto's macvtap is set up while QEMU starts (its NIC is
		// plugged in over QMP): a kill may land between the two.
		{name: "auto", setup: func(t *testing.T) *lan { return newLAN(t, false) },
			args: func(*rand.Rand) []string { return []string{"--net", "auto"} }},
		{name: "routed", setup: func(t *testing.T) *lan {
			// With an IPv6 /64 on the uplink, so the IPv6 steps (router
			// advertisements, accept_ra, IPv6 forwarding) are set up too.
			l := newLAN(t, false)
			l.LAN.MustRun(t, "ip", "-6", "addr", "add", "fd78::1/64", "dev", "lan0", "nodad")
			l.Host.MustRun(t, "ip", "-6", "addr", "add", "fd78::2/64", "dev", "up0", "nodad")
			l.Host.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd78::1", "dev", "up0")
			l.Host.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=1", "net.ipv6.conf.all.forwarding=0")
			return l
		}, args: func(rng *rand.Rand) []string {
			// Half the rounds lease the guest's address from the LAN's
			// dnsmasq (a kill may land in the DHCP exchange).
			if rng.IntN(2) == 0 {
				return []string{"--net", "routed", "--guest-ip", "10.77.0.60/24"}
			}
			return []string{"--net", "routed"}
		}},
		{name: "nat", setup: func(t *testing.T) *lan { return newLAN(t, false) },
			args: func(*rand.Rand) []string { return []string{"--net", "nat", "--resolv-conf", resolv} }},
		{name: "user-passt", setup: func(t *testing.T) *lan {
			testutil.RequireCmd(t, "passt")
			return newLAN(t, false) // passt needs a default route
		}, args: func(*rand.Rand) []string { return []string{"--net", "user"} }},
		{name: "switch", switches: true,
			setup: func(t *testing.T) *lan { l, _ := twoLANs(t); return l },
			args:  func(*rand.Rand) []string { return []string{"--net", "auto"} }},
	}
}

// TestSoak is the crash-injection soak; see soakCIRounds.
func TestSoak(t *testing.T) {
	g := requireQEMUTests(t)
	rounds := soakEnvInt(t, "SOAK_ROUNDS", soakCIRounds)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SOAK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: not an unsigned integer", s)
		}
		seed = v
	}
	only := soakEnvInt(t, "SOAK_ROUND", -1)
	var stop time.Time // zero: no time limit
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: not a duration (e.g. 2h)", s)
		}
		stop = time.Now().Add(d)
	}
	var want []string
	if s := os.Getenv("SOAK_MODES"); s != "" {
		want = strings.Split(s, ",")
	}
	t.Logf("soak: SOAK_SEED=%d SOAK_ROUNDS=%d (replay a round with SOAK_SEED=%d SOAK_MODES=<mode> SOAK_ROUND=<n>)", seed, rounds, seed)
	for i, m := range soakModes(t) {
		if want != nil && !slices.Contains(want, m.name) {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			s := newSoak(t, g, m, uint64(i))
			t0 := time.Now()
			ran := 0
			rounds := rounds
			if m.switches && os.Getenv("SOAK_ROUNDS") == "" {
				rounds = soakSwitchCIRounds
			}
			for r := 1; r <= rounds; r++ {
				if only >= 0 && r != only {
					continue
				}
				if !stop.IsZero() && time.Now().After(stop) {
					t.Logf("SOAK_DURATION is over: stopping before round %d", r)
					break
				}
				s.round(t, seed, r)
				ran++
				if t.Failed() {
					t.Fatalf("%s: round %d failed after %d rounds survived (SOAK_SEED=%d SOAK_MODES=%s SOAK_ROUND=%d replays it)",
						m.name, r, ran-1, seed, m.name, r)
				}
			}
			t.Logf("SOAK %s: %d rounds survived in %s (%s)", m.name, ran, time.Since(t0).Round(time.Second), s.tally())
		})
	}
}

func soakEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		t.Fatalf("%s=%q: not a number of rounds", name, s)
	}
	return v
}

// soak is one mode's soak: its namespaces, the state before, counters.
type soak struct {
	g       testutil.GuestImages
	mode    soakMode
	index   uint64
	l       *lan
	runtime string
	before  hostSnapshot
	steps   int           // -v step lines up to "guest running" in a clean run
	switchT time.Duration // a clean switch's "switched in" (switch mode)
	mu      sync.Mutex
	counts  map[string]int
}

func newSoak(t *testing.T, g testutil.GuestImages, m soakMode, index uint64) *soak {
	l := m.setup(t)
	waitNoTentative(t, l)
	s := &soak{g: g, mode: m, index: index, l: l, runtime: runtimeDir(t), counts: map[string]int{}}
	s.before = takeSnapshot(t, l.Host, s.runtime)
	// A clean run first: the mode works here, and it tells how many step
	// lines set-up prints (the range a set-up kill is drawn from).
	p := s.start(t, s.soakArgs(rand.New(rand.NewPCG(0, 0))), nil)
	if err := p.waitReady(2 * time.Minute); err != nil {
		t.Fatalf("%s: clean run: %v\n%s", m.name, err, p.stderr)
	}
	s.steps = p.stepsSeen()
	p.signal(syscall.SIGTERM)
	if code, sig := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("%s: clean run ended with code %d (%v) after SIGTERM\n%s", m.name, code, sig, p.stderr)
	}
	s.check(t, "after a clean run")
	if t.Failed() {
		t.FailNow()
	}
	// The check can fail: a SIGKILLed run leaves at least its runtime
	// directory (and, in most modes, links), which the snapshot must show.
	p = s.start(t, s.soakArgs(rand.New(rand.NewPCG(0, 0))), nil)
	if err := p.waitReady(2 * time.Minute); err != nil {
		t.Fatalf("%s: control run: %v\n%s", m.name, err, p.stderr)
	}
	p.signal(syscall.SIGKILL)
	p.waitExit(t, 2*time.Minute)
	d := s.before.diff(takeSnapshot(t, l.Host, s.runtime))
	if !strings.Contains(d, "runtime files: left behind") {
		t.Fatalf("%s: after a SIGKILL without gc the snapshot shows no leftover runtime files; the check is blind:\n%s", m.name, d)
	}
	t.Logf("%s: a SIGKILLed run, before gc, differs in:\n%s", m.name, d)
	if out, errOut, code := RunVMRun(t, l.Host, s.runtime, "gc"); code != 0 {
		t.Fatalf("%s: gc after the control run: exit %d\n%s%s", m.name, code, out, errOut)
	}
	s.check(t, "after the control run and gc")
	if t.Failed() {
		t.FailNow()
	}
	if m.switches {
		s.cleanSwitch(t)
	}
	return s
}

// soakArgs are the arguments of every run: a cheap guest (the test
// kernel, no disk; most rounds never see it boot) and a short grace period.
// A switch needs a booted guest that releases its NIC: the test disk, its
// console on stdout (its markers say when it is up).
func (s *soak) soakArgs(rng *rand.Rand) []string {
	guest := []string{"--kernel", s.g.Kernel, "--initrd", s.g.Initrd, "--console", "none", "--mem", "128M"}
	if s.mode.switches {
		guest = []string{"--disk", s.g.Test, "--snapshot", "--console", "serial"}
	}
	return append(append(append([]string{"-v"}, guest...), "--accel", "tcg", "--shutdown-grace", "300ms", "--name", "soak-"+s.mode.name),
		s.mode.args(rng)...)
}

// round runs one round: start, kill, recover, compare.
func (s *soak) round(t *testing.T, seed uint64, r int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, s.index<<32|uint64(r)))
	args := s.soakArgs(rng)
	phase := []string{"set-up", "run", "teardown", "detached"}[rng.IntN(4)]
	p, what := (*soakProc)(nil), ""
	if s.mode.switches {
		phase = "switch"
		p, what = s.crashSwitch(t, rng, args)
	} else {
		p, what = s.crash(t, rng, args, phase)
	}
	if p == nil {
		return
	}
	// Recovery: gc, or a restart of the same --name (stopped cleanly); in
	// some rounds that recovery itself is killed (the restart early in its
	// set-up, where it removes the leftovers; gc a few ms after its start)
	// and gc cleans up after both.
	recovery := []string{"gc", "gc", "restart", "restart", "restart killed, gc", "gc killed, gc"}[rng.IntN(6)]
	desc := fmt.Sprintf("round %d: %s, %s, then %s", r, s.mode.name, what, recovery)
	if msg := p.verdict(); msg != "" {
		t.Errorf("%s: %s\n--- stderr:\n%s", desc, msg, p.stderr)
		return
	}
	gc := func() bool {
		out, errOut, code := RunVMRun(t, s.l.Host, s.runtime, "gc")
		if code != 0 {
			t.Errorf("%s: vmrun gc exit %d\n%s%s\n--- killed run's stderr:\n%s", desc, code, out, errOut, p.stderr)
		}
		return code == 0
	}
	switch recovery {
	case "gc":
		if !gc() {
			return
		}
	case "restart":
		q := s.start(t, args, nil)
		if err := q.waitReady(2 * time.Minute); err != nil {
			t.Errorf("%s: restart: %v\n%s--- killed run's stderr:\n%s", desc, err, q.stderr, p.stderr)
			return
		}
		q.signal(syscall.SIGTERM)
		if code, sig := q.wait(t, 2*time.Minute); code != 0 {
			t.Errorf("%s: the restart ended with code %d (%v) after SIGTERM\n--- restart's stderr:\n%s--- killed run's stderr:\n%s",
				desc, code, sig, q.stderr, p.stderr)
			return
		}
	case "restart killed, gc":
		q, _ := s.crashAt(t, rng, args, 1+rng.IntN(min(4, s.steps)), false, 0)
		if msg := q.verdict(); msg != "" {
			t.Errorf("%s: restart: %s\n--- restart's stderr:\n%s", desc, msg, q.stderr)
			return
		}
		if !gc() {
			return
		}
	case "gc killed, gc":
		q := s.start(t, []string{"gc"}, nil)
		time.Sleep(time.Duration(rng.IntN(40000)) * time.Microsecond) // the random moment of the kill
		q.signal(syscall.SIGKILL)
		q.waitExit(t, 2*time.Minute)
		if !gc() {
			return
		}
	}
	s.check(t, desc)
	if !t.Failed() {
		t.Logf("%s: survived", desc)
	}
	s.mu.Lock()
	s.counts[phase+", "+recovery]++
	s.mu.Unlock()
}

// crash starts vmrun and kills it in phase; it returns the process
// (nil after a failure) and a description of the kill.
func (s *soak) crash(t *testing.T, rng *rand.Rand, args []string, phase string) (*soakProc, string) {
	t.Helper()
	termFirst := phase == "teardown" || rng.IntN(3) == 0
	killDelay := time.Duration(50+rng.IntN(450)) * time.Millisecond // SIGTERM to SIGKILL
	how := "SIGKILL"
	if termFirst {
		how = fmt.Sprintf("SIGTERM, SIGKILL %s later", killDelay)
	}
	if phase == "set-up" {
		p, what := s.crashAt(t, rng, args, 1+rng.IntN(s.steps), termFirst, killDelay)
		return p, how + " " + what
	}
	if phase == "detached" {
		p, d := s.crashDetached(t, rng, args, termFirst, killDelay)
		return p, fmt.Sprintf("%s the detached supervisor %s after vmrun -d returned", how, d)
	}
	d := time.Duration(rng.IntN(1000)) * time.Millisecond
	p := s.start(t, args, nil)
	if err := p.waitReady(2 * time.Minute); err != nil {
		t.Errorf("%s: %v\n%s", s.mode.name, err, p.stderr)
		return nil, ""
	}
	time.Sleep(d) // the random moment of the kill, not synchronisation
	p.kill(termFirst, killDelay)
	p.waitExit(t, 2*time.Minute)
	return p, fmt.Sprintf("%s %s after the guest ran", how, d)
}

// crashDetached starts vmrun --detach and, once it has returned (the
// guest runs), kills the detached supervisor at a random moment within a
// second. It returns a process without a verdict (the supervisor is not
// the test's child: init reaps it), or nil after a failure, and when the
// kill came.
func (s *soak) crashDetached(t *testing.T, rng *rand.Rand, args []string, termFirst bool, killDelay time.Duration) (*soakProc, time.Duration) {
	t.Helper()
	d := time.Duration(rng.IntN(1000)) * time.Millisecond
	name := "soak-" + s.mode.name
	out, errOut, code := RunVMRun(t, s.l.Host, s.runtime, append([]string{"--detach"}, args...)...)
	if code != 0 || strings.TrimSpace(out) != name {
		t.Errorf("%s: vmrun --detach: exit %d, stdout %q\n%s", s.mode.name, code, out, errOut)
		return nil, d
	}
	st, err := rundir.ReadState(filepath.Join(s.runtime, name))
	if err != nil || st.PID <= 0 {
		t.Errorf("%s: the detached VM's state: %+v, %v", s.mode.name, st, err)
		return nil, d
	}
	fd, err := unix.PidfdOpen(st.PID, 0)
	if err != nil {
		t.Errorf("%s: the detached supervisor %d: %v", s.mode.name, st.PID, err)
		return nil, d
	}
	defer unix.Close(fd)
	exited := func(timeout time.Duration) bool {
		for {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(timeout.Milliseconds()))
			if !errors.Is(err, syscall.EINTR) {
				return n > 0
			}
		}
	}
	time.Sleep(d) // the random moment of the kill, not synchronisation
	if termFirst {
		_ = unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0)
		if exited(killDelay) { // the random moment of the kill
			return &soakProc{stderr: testutil.NewLineBuffer()}, d
		}
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	if !exited(2 * time.Minute) {
		t.Fatalf("%s: the detached supervisor %d still runs 2m after SIGKILL", s.mode.name, st.PID)
	}
	return &soakProc{stderr: testutil.NewLineBuffer()}, d
}

// crashAt starts vmrun and kills it after its n-th step line: within a
// millisecond (as soon as the test reads the line, or a little later) or, in
// half the rounds, up to 20 ms later, inside the next step.
func (s *soak) crashAt(t *testing.T, rng *rand.Rand, args []string, n int, termFirst bool, killDelay time.Duration) (*soakProc, string) {
	t.Helper()
	extra := time.Duration(rng.IntN(1000)) * time.Microsecond
	if rng.IntN(2) == 0 {
		extra = time.Duration(rng.IntN(20000)) * time.Microsecond
	}
	p := s.start(t, args, &stepTrigger{n: n, fire: func(p *soakProc) {
		if extra > 0 {
			time.Sleep(extra) // the random moment of the kill, not synchronisation
		}
		p.kill(termFirst, killDelay)
	}})
	p.waitExit(t, 2*time.Minute)
	return p, fmt.Sprintf("after step line %d/%d +%s", n, s.steps, extra)
}

// check compares the host namespace with its state before the soak.
func (s *soak) check(t *testing.T, desc string) {
	t.Helper()
	if left := waitNoProcesses(s.l.Host, time.Minute); len(left) > 0 {
		t.Errorf("%s: processes left in the host namespace:\n  %s", desc, strings.Join(left, "\n  "))
	}
	after := takeSnapshot(t, s.l.Host, s.runtime)
	if d := s.before.diff(after); d != "" {
		t.Errorf("%s: the host namespace differs from before:\n%s", desc, d)
	}
}

func (s *soak) tally() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for k, v := range s.counts {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// stepTrigger fires once, when the n-th step line has been written.
type stepTrigger struct {
	n    int
	fire func(*soakProc)
}

// soakProc is one vmrun process of the soak.
type soakProc struct {
	cmd    *exec.Cmd
	stderr *testutil.LineBuffer
	done   chan struct{}

	mu       sync.Mutex
	partial  []byte
	steps    int  // step lines up to and including "guest running"
	lines    int  // step lines in all
	ready    bool // "guest running" seen (the set-up is over)
	trigger  *stepTrigger
	onLine   *lineTrigger
	signaled []syscall.Signal
}

// start starts vmrun with the soak's arguments in the host namespace.
func (s *soak) start(t *testing.T, args []string, trig *stepTrigger) *soakProc {
	t.Helper()
	cmd := command(s.l.Host, s.runtime, args...)
	p := &soakProc{cmd: cmd, stderr: testutil.NewLineBuffer(), done: make(chan struct{}), trigger: trig}
	cmd.Stdout = p.stderr
	cmd.Stderr = p
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

// Write collects vmrun's stderr, counts its step lines and fires the
// trigger on the n-th one.
func (p *soakProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.partial = append(p.partial, b...)
	var fire *stepTrigger
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		if p.onLine != nil && p.onLine.re.MatchString(line) {
			fire, p.onLine = &stepTrigger{fire: p.onLine.fire}, nil
		}
		if soakStepLine.MatchString(line) {
			// The trigger counts every step line: "following the uplink"
			// comes after "guest running" (the watch starts once the guest
			// runs), and so may others, so a clean run's count up to
			// "guest running" may be reached only just after it.
			p.lines++
			if !p.ready {
				p.steps++
				p.ready = strings.Contains(line, "guest running")
			}
			if p.trigger != nil && p.lines == p.trigger.n {
				fire, p.trigger = p.trigger, nil
			}
		}
	}
	p.mu.Unlock()
	if fire != nil {
		// Not in this goroutine: a SIGTERM-then-SIGKILL waits for vmrun's
		// exit, which waits for its output to be copied.
		go fire.fire(p)
	}
	return p.stderr.Write(b)
}

// waitReady waits for the "guest running" step line (QMP is ready, the
// NIC plugged in, the guest resumed); it gives up when vmrun exits first.
func (p *soakProc) waitReady(timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { _, err := p.stderr.WaitFor(`guest running`, timeout); errc <- err }()
	select {
	case err := <-errc:
		return err
	case <-p.done:
		if _, err := p.stderr.WaitFor(`guest running`, 0); err == nil {
			return nil
		}
		return fmt.Errorf("vmrun exited (%v) before the guest ran", p.cmd.ProcessState)
	}
}

// stepsSeen is the number of step lines up to and including "guest
// running".
func (p *soakProc) stepsSeen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.steps
}

// signal sends sig to vmrun (nothing if it has exited).
func (p *soakProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	p.signaled = append(p.signaled, sig)
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(sig)
}

// kill sends SIGKILL, or SIGTERM and SIGKILL after delay unless vmrun has
// exited by then.
func (p *soakProc) kill(termFirst bool, delay time.Duration) {
	if termFirst {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(delay): // the random moment of the kill
		}
	}
	p.signal(syscall.SIGKILL)
}

// waitExit waits for vmrun to exit.
func (p *soakProc) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("vmrun still running %s after it was signalled\n%s", timeout, p.stderr)
	}
}

// wait waits for vmrun to exit and returns its exit code and the signal
// that ended it, if any.
func (p *soakProc) wait(t *testing.T, timeout time.Duration) (int, syscall.Signal) {
	t.Helper()
	p.waitExit(t, timeout)
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -1, ws.Signal()
	}
	return ws.ExitStatus(), 0
}

// verdict says what is wrong with how a killed run ended ("" if nothing):
// it must have died of SIGKILL, or have exited with 0 after SIGTERM. A
// detached supervisor's end is not known (init reaps it).
func (p *soakProc) verdict() string {
	if p.cmd == nil {
		return "" // a detached supervisor: not the test's child
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	p.mu.Lock()
	sent := slices.Clone(p.signaled)
	p.mu.Unlock()
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return ""
	case ws.Signaled():
		return fmt.Sprintf("vmrun died of %v", ws.Signal())
	case len(sent) == 0:
		return fmt.Sprintf("vmrun exited with code %d before it was signalled", ws.ExitStatus())
	case sent[0] == syscall.SIGTERM && ws.ExitStatus() == 0:
		return ""
	}
	return fmt.Sprintf("vmrun exited with code %d after %v", ws.ExitStatus(), sent)
}
