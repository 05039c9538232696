package e2e

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The soak's "switch" mode (issue 12: crash safety through a switch): a
// --net auto guest booted on LAN A (macvtap on up0, twoLANs) is moved by
// the default route to LAN B (a macvtap on up1), and vmrun is SIGKILLed
// at a random moment of that switch — while the new attachment is being
// made, while the guest's NIC is being replaced, or while the old
// attachment is being removed — then gc'd or restarted like any round,
// and the host namespace must be as before (links, addresses, routes,
// nft tables, sysctls, processes, the runtime directory).
//
// soakSwitchCIRounds is its rounds when SOAK_ROUNDS is not set (CI: each
// round boots the test guest under TCG, 15-40 s on a loaded machine);
// `make soak` runs SOAK_ROUNDS of them.
const soakSwitchCIRounds = 3

// soakSwitchLine is vmrun's step line at the start of the switch, and
// soakSwitchedLine its line once the new NIC is live (the old attachment
// is removed right after it).
var (
	soakSwitchLine   = regexp.MustCompile(`network: switching macvtap → macvtap`)
	soakSwitchedLine = regexp.MustCompile(`network: macvtap → macvtap \(the default route moved[^\n]*; switched in \d+ ms`)
)

// soakApplyBound is the share of a switch a kill counts as "the new
// attachment being made": a macvtap's set-up takes a few ms, under load
// up to tens.
const soakApplyBound = 30 * time.Millisecond

// bootForSwitch starts vmrun with args and waits until the guest is up
// (its ready marker on the console) and vmrun follows the uplink; nil
// after a failure.
func (s *soak) bootForSwitch(t *testing.T, args []string, trig *lineTrigger) *soakProc {
	t.Helper()
	p := s.start(t, args, nil)
	p.mu.Lock()
	p.onLine = trig
	p.mu.Unlock()
	for _, re := range []string{`following the uplink \(up0\)`, `VMRUN-GUEST: ready`} {
		if _, err := p.stderr.WaitFor(re, bootTimeout); err != nil {
			t.Errorf("switch: %s: %v\n%s", re, err, p.stderr)
			return nil
		}
	}
	return p
}

// moveRoute moves the host's default route to LAN B (the switch's cause)
// or back to A, as it was before the soak.
func (s *soak) moveRoute(t *testing.T, toB bool) {
	t.Helper()
	if toB {
		s.l.Host.MustRun(t, "ip", "route", "replace", "default", "via", "10.78.0.1", "dev", "up1")
		return
	}
	s.l.Host.MustRun(t, "ip", "route", "replace", "default", "via", "10.77.0.1", "dev", "up0")
}

// cleanSwitch runs one switch to LAN B without a kill: the mode works
// here, and its "switched in" time bounds the kill moments drawn later.
func (s *soak) cleanSwitch(t *testing.T) {
	p := s.bootForSwitch(t, s.soakArgs(rand.New(rand.NewPCG(0, 0))), nil)
	if p == nil {
		t.FailNow()
	}
	s.moveRoute(t, true)
	m, err := p.stderr.WaitFor(`switched in (\d+) ms`, stepTimeout)
	s.moveRoute(t, false)
	if err != nil {
		t.Fatalf("switch: the clean switch: %v\n%s", err, p.stderr)
	}
	ms, _ := strconv.Atoi(m[1])
	s.switchT = time.Duration(ms) * time.Millisecond
	p.signal(syscall.SIGTERM)
	if code, sig := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("switch: the clean run ended with code %d (%v) after SIGTERM\n%s", code, sig, p.stderr)
	}
	s.check(t, "after a clean switch")
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("switch: a clean switch took %s", s.switchT)
}

// lineTrigger fires once, on the first stderr line re matches.
type lineTrigger struct {
	re   *regexp.Regexp
	fire func(*soakProc)
}

// crashSwitch boots the guest, moves the default route to LAN B and
// SIGKILLs vmrun at one of the switch's three moments, then puts the
// route back. It returns the killed process (nil after a failure) and
// the kill's description.
func (s *soak) crashSwitch(t *testing.T, rng *rand.Rand, args []string) (*soakProc, string) {
	t.Helper()
	stage := []string{"making the new attachment", "replacing the NIC", "removing the old attachment"}[rng.IntN(3)]
	on, after := soakSwitchLine, time.Duration(rng.IntN(int(soakApplyBound.Microseconds())))*time.Microsecond
	switch stage {
	case "replacing the NIC":
		after = soakApplyBound + time.Duration(rng.IntN(int(max(s.switchT, 2*soakApplyBound).Microseconds())))*time.Microsecond
	case "removing the old attachment":
		on, after = soakSwitchedLine, time.Duration(rng.IntN(10000))*time.Microsecond
	}
	p := s.bootForSwitch(t, args, &lineTrigger{re: on, fire: func(p *soakProc) {
		time.Sleep(after) // the random moment of the kill, not synchronisation
		p.signal(syscall.SIGKILL)
	}})
	if p == nil {
		return nil, ""
	}
	s.moveRoute(t, true)
	defer s.moveRoute(t, false)
	select {
	case <-p.done:
	case <-time.After(stepTimeout):
		t.Errorf("switch: no switch within %s of the route's move (%s)\n%s", stepTimeout, stage, p.stderr)
		p.signal(syscall.SIGKILL)
		p.waitExit(t, 2*time.Minute)
		return nil, ""
	}
	done := "the new NIC was not live yet"
	if soakSwitchedLine.MatchString(p.stderr.String()) {
		done = "the new NIC was live"
	}
	return p, fmt.Sprintf("SIGKILL %s after %q (%s; %s)", after, on, stage, done)
}
