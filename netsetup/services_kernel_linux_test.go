package netsetup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vmrun/vmrun/internal/service"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// serviceWait bounds the wait for a service's outcome.
const serviceWait = 20 * time.Second

// awaitDone waits for the attachment to say it can no longer serve the
// guest, and returns its sentence.
func awaitDone(t *testing.T, a *netsetup.Attachment) *service.DeadError {
	t.Helper()
	select {
	case <-a.Done():
	case <-time.After(serviceWait):
		t.Fatal("the attachment's Done was not closed")
	}
	var dead *service.DeadError
	if !errors.As(a.Err(), &dead) {
		t.Fatalf("Err = %v, want a *service.DeadError", a.Err())
	}
	return dead
}

// TestPasstKilledEndsTheRun: passt is killed while the attachment lives;
// its service ends the run (Done closes with the sentence), and Undo still
// removes everything.
func TestPasstKilledEndsTheRun(t *testing.T) {
	passt := testutil.RequireCmd(t, "passt")
	l := newLab(t)
	l.host.MustRun(t, "ip", "addr", "add", "10.77.0.2/24", "dev", "up0")
	l.host.MustRun(t, "ip", "route", "add", "default", "via", lanIP)
	p := netsetup.Plan{Name: "svc", Mode: netsetup.User, MAC: netsetup.DeriveMAC("svc"), Passt: passt, RuntimeRoot: t.TempDir()}
	rec := &memRecorder{}
	a, err := l.apply(t, context.Background(), p, rec)
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, o := range rec.objects() {
		if o.Kind == netsetup.ObjProcess {
			pid, _ = strconv.Atoi(o.Name)
		}
	}
	if pid == 0 {
		t.Fatalf("no passt recorded: %+v", rec.objects())
	}
	select {
	case <-a.Done():
		t.Fatalf("Done before passt was killed: %v", a.Err())
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	dead := awaitDone(t, a)
	msg := dead.Error()
	for _, want := range []string{"passt stopped", "signal: killed", "the guest has lost its network", "start it again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Err %q lacks %q", msg, want)
		}
	}
	if err := a.Undo(); err != nil {
		t.Errorf("undo after passt died: %v", err)
	}
	if objs := rec.objects(); len(objs) != 0 {
		t.Errorf("left recorded after undo: %+v", objs)
	}
}

// killService ends the current run of the named service as a failure
// (the test hook: nothing outside vmrun can close a service's socket) and
// waits until it serves again, reopened by its restart policy.
func killService(t *testing.T, a *netsetup.Attachment, c *collector, name string) {
	t.Helper()
	again := name + " serves again"
	count := func() int {
		_, events := c.all()
		n := 0
		for _, e := range events {
			if e == again {
				n++
			}
		}
		return n
	}
	before := count()
	if !a.Services.Fail(name, errors.New("killed by the test")) {
		t.Fatalf("no service %q runs", name)
	}
	deadline := time.After(serviceWait)
	for {
		changed := c.changed()
		if count() > before {
			break
		}
		select {
		case <-changed:
		case <-a.Done():
			t.Fatalf("%s did not come back: %v", name, a.Err())
		case <-deadline:
			t.Fatalf("%s did not serve again within %s", name, serviceWait)
		}
	}
	notices, _ := c.all()
	restarted := false
	for _, n := range notices {
		restarted = restarted || strings.HasPrefix(n, name+" failed (killed by the test); restarting it")
	}
	if !restarted {
		t.Errorf("no restart notice for %s: %q", name, notices)
	}
}

// askDNS sends a query to the DNS forwarder at gw:53 from the host
// namespace; any answer (the LAN has no name server: SERVFAIL) shows it
// serves.
func askDNS(t *testing.T, l *lab, gw net.IP) {
	t.Helper()
	err := l.host.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion("vmrun.test.", dns.TypeA)
		_, _, err := (&dns.Client{Net: "udp", Timeout: 10 * time.Second}).Exchange(m, net.JoinHostPort(gw.String(), "53"))
		return err
	})
	if err != nil {
		t.Fatalf("DNS forwarder on %s: %v", gw, err)
	}
}

// TestNATServicesRestart: NAT's DHCP responder and DNS forwarder are
// restarted when they fail, and serve the guest again (a new DISCOVER is
// answered, a query on the gateway too); the responder failing once more
// than its policy allows within a minute makes the attachment dead, with
// the sentence; Undo still removes everything.
func TestNATServicesRestart(t *testing.T) {
	l := natLab(t)
	p := natPlan(t, "svc-nat")
	var c collector
	a, err := l.apply(t, c.trace(ctxT(t, 30*time.Second)), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := fakeguest.New(a.Files[0], p.MAC, true)
	defer g.Close()
	lease, err := g.DHCP(ctxT(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	killService(t, a, &c, hostnet.ServiceDHCP)
	if _, err := g.DHCP(ctxT(t, 20*time.Second)); err != nil {
		t.Fatalf("DHCP after the responder was restarted: %v", err)
	}
	askDNS(t, l, lease.Router)
	killService(t, a, &c, hostnet.ServiceDNS)
	askDNS(t, l, lease.Router)
	select {
	case <-a.Done():
		t.Fatalf("Done after restarts within the policy: %v", a.Err())
	default:
	}

	// The first kill counts: DefaultRestarts failures in all are
	// restarted, one more is not.
	for range service.DefaultRestarts - 1 {
		killService(t, a, &c, hostnet.ServiceDHCP)
	}
	a.Services.Fail(hostnet.ServiceDHCP, errors.New("killed by the test"))
	dead := awaitDone(t, a)
	want := hostnet.ServiceDHCP + " failed 6 times within 1m0s (killed by the test): the guest can no longer get or renew its address by DHCP; vmrun stops the VM; start it again"
	if dead.Error() != want {
		t.Errorf("Err =\n %q\nwant\n %q", dead, want)
	}
	g.Close()
	a.CloseFiles()
	if err := a.Undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
}

// TestIPVtapServicesRestart: ipvtap's learner, its watcher of link events
// and its DHCP proxy are killed and restarted before the guest starts; the
// guest (a DHCP client that does not ask for broadcast replies) still gets
// its lease from vmrun and on the LAN, and the parent going down and up is
// still followed.
func TestIPVtapServicesRestart(t *testing.T) {
	t.Parallel()
	e := vethEnv(t)
	p := e.planIPVtap(t, netsetup.Request{Name: "ipv-svc", NoHostLink: true})
	var c collector
	a, err := e.apply(t, c.trace(ctxT(t, 2*time.Minute)), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{hostnet.ServiceLearner, hostnet.ServiceWatcher, hostnet.ServiceDHCP} {
		killService(t, a, &c, name)
	}
	g := fakeguest.NewQueues(a.Files, a.MAC, true)
	defer g.Close()
	g.SetClientID(guestClientID("ipv-svc"))
	g.SetBroadcastFlag(false)
	lease, err := g.DHCP(ctxT(t, time.Minute))
	if err != nil {
		t.Fatalf("DHCP after the learner and the reply watcher were restarted: %v", err)
	}
	waitTrace(t, &c, fmt.Sprintf("guest address %s registered (leased from ", lease.IP), time.Minute)
	if err := e.lan.Ping(lease.IP.String(), 20*time.Second); err != nil {
		t.Fatalf("LAN → guest: %v", err)
	}
	e.bounce(t, nil)
	waitTrace(t, &c, e.parent+" is back: ", time.Minute)
	select {
	case <-a.Done():
		t.Fatalf("Done after restarts within the policy: %v", a.Err())
	default:
	}
	g.Close()
	if err := a.Undo(); err != nil {
		t.Fatal(err)
	}
	e.assertClean(t)
}
