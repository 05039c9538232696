package dhcpupstream

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestVMClientID(t *testing.T) {
	if got := VMClientID("web"); string(got) != "\x00vmrun-web" {
		t.Errorf("VMClientID(web) = %q", got)
	}
}

func TestOpenErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  Config
		want error
	}{
		"no link":          {Config{ClientID: VMClientID("a")}, ErrInvalidConfig},
		"short client id":  {Config{Link: "lo", ClientID: []byte{0}}, ErrInvalidConfig},
		"negative timeout": {Config{Link: "lo", ClientID: VMClientID("a"), Timeout: -1}, ErrInvalidConfig},
		"missing link":     {Config{Link: "vmrt-absent-0", ClientID: VMClientID("a")}, ErrLinkNotFound},
	} {
		_, err := open(tc.cfg)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", name, err, tc.want)
		}
	}
	_, err := open(Config{Link: "vmrt-absent-0", ClientID: VMClientID("a")})
	if !errors.Is(err, os.ErrNotExist) || err.Error() != `dhcp lease on "vmrt-absent-0": link not found` {
		t.Errorf("missing link: %q; want a message naming the link, matching os.ErrNotExist", err)
	}
}

func TestLeaseFromACK(t *testing.T) {
	sent := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ack, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 98, 0, 7)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 98, 0, 1), net.IPv4(10, 98, 0, 2)),
		dhcpv4.WithDNS(net.IPv4(10, 98, 0, 53)), dhcpv4.WithLeaseTime(800),
		dhcpv4.WithOption(dhcpv4.OptDomainName("lan.test")))
	if err != nil {
		t.Fatal(err)
	}
	offer, err := dhcpv4.New(dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 98, 0, 1))))
	if err != nil {
		t.Fatal(err)
	}
	l := leaseFromACK(ack, offer, sent)
	if !l.IP.Equal(net.IPv4(10, 98, 0, 7)) || ones(l.Mask) != 24 || !l.Router.Equal(net.IPv4(10, 98, 0, 1)) ||
		len(l.DNS) != 1 || l.Domain != "lan.test" || !l.ServerID.Equal(net.IPv4(10, 98, 0, 1)) {
		t.Errorf("lease %+v", l)
	}
	if l.LeaseTime != 800*time.Second || l.T1 != 400*time.Second || l.T2 != 700*time.Second || !l.Expires().Equal(sent.Add(800*time.Second)) {
		t.Errorf("times: lease %s T1 %s T2 %s expires %s; want 800s, 400s, 700s (RFC 2131 defaults)", l.LeaseTime, l.T1, l.T2, l.Expires())
	}
	// A server's T1 beyond its T2 is ignored.
	ack.UpdateOption(dhcpv4.OptRenewTimeValue(750 * time.Second))
	ack.UpdateOption(dhcpv4.OptRebindingTimeValue(600 * time.Second))
	if l := leaseFromACK(ack, offer, sent); l.T1 != 400*time.Second || l.T2 != 600*time.Second {
		t.Errorf("T1 %s T2 %s; want 400s 600s", l.T1, l.T2)
	}
}

func TestStateAndRetry(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	l := Lease{Acquired: t0, LeaseTime: 1000 * time.Second, T1: 500 * time.Second, T2: 875 * time.Second}
	for _, tc := range []struct {
		now   time.Duration
		held  bool
		state state
		retry time.Duration // retryAt after a failure at now, from t0 (not for stateBound)
	}{
		{0, true, stateBound, 0},
		{499 * time.Second, true, stateBound, 0},
		{500 * time.Second, true, stateRenewing, 500*time.Second + 375*time.Second/2},
		{800 * time.Second, true, stateRenewing, 860 * time.Second}, // half of 75 s < a minute
		{850 * time.Second, true, stateRenewing, 875 * time.Second}, // never past T2
		{875 * time.Second, true, stateRebinding, 875*time.Second + 125*time.Second/2},
		{990 * time.Second, true, stateRebinding, 1000 * time.Second},
		{1000 * time.Second, true, stateLost, 1010 * time.Second},
		{10 * time.Second, false, stateLost, 20 * time.Second},
	} {
		st := stateAt(l, tc.held, at(tc.now))
		if st != tc.state {
			t.Errorf("at %s held=%v: state %d, want %d", tc.now, tc.held, st, tc.state)
			continue
		}
		if st == stateBound {
			continue // Run waits for T1, not a retry time
		}
		if got := retryAt(l, st, at(tc.now)).Sub(t0); got != tc.retry {
			t.Errorf("at %s: retry at %s, want %s", tc.now, got, tc.retry)
		}
	}
}
