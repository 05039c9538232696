package netsetup_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// TestMain lets the test binary double as the helper processes of the
// crash tests (see helper_linux_test.go).
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// lab is a "host" namespace whose uplink up0 is a veth to a "lan"
// namespace (lan0, 10.77.0.1/24), the stand-in for a wired LAN.
type lab struct {
	host, lan *testutil.Netns
	before    []string // host's links before the test did anything
}

const (
	lanIP     = "10.77.0.1"
	lanPrefix = "10.77.0.1/24"
)

func newLab(t testing.TB) *lab {
	t.Helper()
	testutil.RequireRoot(t)
	l := &lab{host: testutil.NewNetns(t, "h"), lan: testutil.NewNetns(t, "l")}
	testutil.Veth(t, l.host, "up0", l.lan, "lan0")
	l.lan.MustRun(t, "ip", "addr", "add", lanPrefix, "dev", "lan0")
	l.before = l.host.Links(t)
	return l
}

// bridged turns the lab's uplink into a port of bridge br0 in the host
// namespace (the guest's tap joins br0).
func (l *lab) bridged(t testing.TB) {
	t.Helper()
	l.host.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	l.host.MustRun(t, "ip", "link", "set", "up0", "master", "br0")
	l.host.MustRun(t, "ip", "link", "set", "br0", "up")
	l.before = l.host.Links(t)
}

// plan decides a plan for VM name inside the host namespace.
func (l *lab) plan(t testing.TB, r netsetup.Request) netsetup.Plan {
	t.Helper()
	var p netsetup.Plan
	err := l.host.Do(func() error {
		f, err := netsetup.Detect(context.Background(), r)
		if err != nil {
			return err
		}
		p, err = netsetup.Decide(f, r)
		return err
	})
	if err != nil {
		t.Fatalf("plan %+v: %v", r, err)
	}
	return p
}

// apply runs Apply inside the host namespace; the attachment is undone at
// cleanup if the test has not done it.
func (l *lab) apply(t testing.TB, ctx context.Context, p netsetup.Plan, rec netsetup.Recorder) (*netsetup.Attachment, error) {
	t.Helper()
	var a *netsetup.Attachment
	err := l.host.Do(func() error {
		var err error
		a, err = netsetup.Apply(ctx, p, rec)
		return err
	})
	if a != nil {
		t.Cleanup(func() { _ = a.Undo() })
	}
	return a, err
}

// link reads a link of the host namespace through netlink.
func (l *lab) link(t testing.TB, name string) (netlink.Link, error) {
	t.Helper()
	var link netlink.Link
	err := l.host.Do(func() error {
		var err error
		link, err = netlink.LinkByName(name)
		return err
	})
	return link, err
}

// assertClean fails unless the host namespace has exactly its links from
// before the test.
func (l *lab) assertClean(t testing.TB) {
	t.Helper()
	if got := l.host.Links(t); !slices.Equal(got, l.before) {
		t.Errorf("links after clean-up %v, want %v", got, l.before)
	}
}

// macvtapPlan is a plan for a macvtap on up0 with the given queues.
func macvtapPlan(t testing.TB, l *lab, name string, queues int) netsetup.Plan {
	t.Helper()
	return l.plan(t, netsetup.Request{Mode: netsetup.Macvtap, Parent: "up0", Name: name, Queues: queues})
}

// memRecorder records objects in memory, like rundir.Dir does on disk.
type memRecorder struct {
	mu      sync.Mutex
	objs    []rundir.Object
	records int
}

func (r *memRecorder) Record(o rundir.Object) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objs = append(r.objs, o)
	r.records++
	return nil
}

func (r *memRecorder) Forget(o rundir.Object) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.objs) - 1; i >= 0; i-- {
		if r.objs[i].Kind == o.Kind && r.objs[i].Name == o.Name {
			r.objs = slices.Delete(r.objs, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("forget %s %s: not recorded", o.Kind, o.Name)
}

func (r *memRecorder) objects() []rundir.Object {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.objs)
}

// ctxT returns a context that ends with the test (or after d).
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
