package guestaddr

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/netsetup"
)

// fakeRun records what a Book does to its run.
type fakeRun struct {
	mu       sync.Mutex
	addrs    map[string]string // address → source
	answered int
	kicks    int
	notices  []string
}

func (f *fakeRun) hooks() Hooks {
	return Hooks{
		Record: func(a rundir.Address, drop bool) (bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			_, had := f.addrs[a.Addr]
			if drop {
				delete(f.addrs, a.Addr)
				return had, nil
			}
			if had {
				return false, nil
			}
			f.addrs[a.Addr] = a.Source
			return true, nil
		},
		Answered: func() { f.mu.Lock(); f.answered++; f.mu.Unlock() },
		Kick:     func() { f.mu.Lock(); f.kicks++; f.mu.Unlock() },
		Step:     func(string, ...any) {},
		Notify: func(format string, a ...any) {
			f.mu.Lock()
			f.notices = append(f.notices, fmt.Sprintf(format, a...))
			f.mu.Unlock()
		},
	}
}

func TestBook(t *testing.T) {
	f := &fakeRun{addrs: map[string]string{}}
	b := New(f.hooks())
	b.Add(netsetup.GuestAddr{Addr: netip.MustParseAddr("fe80::1"), Source: netsetup.SourceDHCP})
	if len(f.addrs) != 0 || f.answered != 0 {
		t.Fatalf("a link-local address was recorded: %v", f.addrs)
	}
	b.Add(netsetup.GuestAddr{Addr: netip.MustParseAddr("192.0.2.7"), Source: netsetup.SourceDHCP, Server: netip.MustParseAddr("192.0.2.1")})
	b.Add(netsetup.GuestAddr{Addr: netip.MustParseAddr("192.0.2.7"), Source: netsetup.SourceDHCP})
	if f.answered != 2 || f.kicks != 1 || len(f.notices) != 1 {
		t.Errorf("answered %d (want 2), kicks %d (want 1), notices %q (want one)", f.answered, f.kicks, f.notices)
	}
	select {
	case <-b.got:
	default:
		t.Error("the first address did not close got")
	}
	b.FromAgent([]netip.Addr{netip.MustParseAddr("2001:db8::7")})
	b.FromAgent(nil)
	if _, ok := f.addrs["2001:db8::7"]; ok || f.kicks != 1 {
		t.Errorf("after the agent stopped reporting it: %v, kicks %d (the agent's own answers kick nothing)", f.addrs, f.kicks)
	}
	if len(f.notices) != 1 {
		t.Errorf("notices %q, want only the first address's", f.notices)
	}
}

func TestDeadline(t *testing.T) {
	f := &fakeRun{addrs: map[string]string{}}
	b := New(f.hooks())
	expired := make(chan struct{})
	b.Deadline(time.Millisecond, func() { close(expired) })
	<-expired
	if !b.TimedOut() {
		t.Error("TimedOut is false after the deadline expired")
	}

	b = New(f.hooks())
	cancel := b.Deadline(time.Hour, func() { t.Error("expired after an address came") })
	b.Add(netsetup.GuestAddr{Addr: netip.MustParseAddr("192.0.2.8"), Source: netsetup.SourceARP})
	cancel()
	if b.TimedOut() {
		t.Error("TimedOut with an address in time")
	}
}
