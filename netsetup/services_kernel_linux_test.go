package netsetup_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/service"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
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
