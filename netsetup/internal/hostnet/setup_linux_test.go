package hostnet

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/rundir"
)

// memRecorder keeps what was recorded and forgotten.
type memRecorder struct{ recorded, forgotten []string }

func (m *memRecorder) Record(o rundir.Object) error {
	m.recorded = append(m.recorded, o.Name)
	return nil
}
func (m *memRecorder) Forget(o rundir.Object) error {
	m.forgotten = append(m.forgotten, o.Name)
	return nil
}

var testCfg = LinkConfig{VM: "vm", LinkName: "vmrtest", Parent: "br-x", MAC: net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}, Queues: 1}

// undoing is a step that registers an undo appending name to ran.
func undoing(name string, ran *[]string) Step {
	return Step{Name: name, Do: func(s *Setup) error {
		s.OnUndo(func() error { *ran = append(*ran, name); return nil })
		return nil
	}}
}

// TestRunUnwindsOnFailure: a failing step's error names the link and the
// step, and every undo registered so far runs once, in reverse order.
func TestRunUnwindsOnFailure(t *testing.T) {
	var ran []string
	boom := errors.New("boom")
	steps := []Step{undoing("first", &ran), undoing("second", &ran), {Name: "third", Do: func(*Setup) error { return boom }}}
	obj := LinkObject("vm", "vmrtest", "tuntap", nil)
	att, err := Run(context.Background(), testCfg, &memRecorder{}, obj, nil, steps)
	if att != nil || !errors.Is(err, boom) || !strings.Contains(err.Error(), `tap "vmrtest" on "br-x": third: boom`) {
		t.Fatalf("Run = %v, %v; want the step's error naming tap vmrtest on br-x", att, err)
	}
	if want := []string{"second", "first"}; !reflect.DeepEqual(ran, want) {
		t.Fatalf("undos ran %v, want %v", ran, want)
	}
}

// TestRunRefusalKeepsItsSentence: a refusal is the user's sentence; only
// the link is named before it, not the step.
func TestRunRefusalKeepsItsSentence(t *testing.T) {
	steps := []Step{{Name: "parent", Do: func(*Setup) error { return Refuse(ErrNoInterface, "interface br-x does not exist") }}}
	_, err := Run(context.Background(), testCfg, NopRecorder{}, LinkObject("vm", "vmrtest", "macvtap", nil), nil, steps)
	if !errors.Is(err, ErrNoInterface) || err.Error() != `macvtap "vmrtest" on "br-x": interface br-x does not exist` {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunCancelled: a cancelled context stops the set-up between steps
// and undoes what was done.
func TestRunCancelled(t *testing.T) {
	var ran []string
	ctx, cancel := context.WithCancel(context.Background())
	steps := []Step{undoing("first", &ran), {Name: "cancel", Do: func(*Setup) error { cancel(); return nil }}, undoing("never", &ran)}
	_, err := Run(ctx, testCfg, NopRecorder{}, LinkObject("vm", "vmrtest", "tuntap", nil), nil, steps)
	if !errors.Is(err, context.Canceled) || !reflect.DeepEqual(ran, []string{"first"}) {
		t.Fatalf("Run: %v, undos %v; want context.Canceled and [first]", err, ran)
	}
}

// TestRunUndoOnce: a set-up that succeeds hands its undos to the
// attachment, whose Undo runs them once, in reverse order, and reports
// the same result every time; each step was traced.
func TestRunUndoOnce(t *testing.T) {
	var ran, traced []string
	boom := errors.New("boom")
	steps := []Step{undoing("first", &ran), {Name: "failing undo", Do: func(s *Setup) error {
		s.OnUndo(func() error { ran = append(ran, "failing undo"); return boom })
		return nil
	}}}
	ctx := WithTrace(context.Background(), &Trace{Step: func(name string) { traced = append(traced, name) }})
	att, err := Run(ctx, testCfg, NopRecorder{}, LinkObject("vm", "vmrtest", "tuntap", nil), nil, steps)
	if err != nil {
		t.Fatal(err)
	}
	if att.Backend != "tap" || att.LinkName != "vmrtest" || att.MAC.String() != testCfg.MAC.String() {
		t.Fatalf("attachment %+v", att)
	}
	e1, e2 := att.Undo(), att.Undo()
	if !errors.Is(e1, boom) || e1 != e2 || !strings.Contains(e1.Error(), "undo failing undo: boom") {
		t.Fatalf("Undo = %v then %v; want the failing undo's error, named, twice", e1, e2)
	}
	if want := []string{"failing undo", "first"}; !reflect.DeepEqual(ran, want) {
		t.Fatalf("undos ran %v, want %v", ran, want)
	}
	if want := []string{"first", "failing undo"}; !reflect.DeepEqual(traced, want) {
		t.Fatalf("traced %v, want %v", traced, want)
	}
}

// TestOwns: a link is vmrun's when it carries the recorded alias, or no
// alias yet but the recorded type and MAC (vmrun died between creating it
// and setting the alias); anything else is foreign.
func TestOwns(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	rec := LinkObject("vm", "vmrtest", "dummy", mac)
	link := func(alias string, m net.HardwareAddr) netlink.Link {
		la := netlink.NewLinkAttrs()
		la.Name, la.Alias, la.HardwareAddr = "vmrtest", alias, m
		return &netlink.Dummy{LinkAttrs: la}
	}
	for name, c := range map[string]struct {
		o    rundir.Object
		l    netlink.Link
		ours bool
	}{
		"alias":                  {rec, link("vmrun:vm", nil), true},
		"no alias yet, same MAC": {rec, link("", mac), true},
		"no alias, other MAC":    {rec, link("", net.HardwareAddr{2, 0, 0, 0, 0, 1}), false},
		"another VM's alias":     {rec, link("vmrun:other", mac), false},
		"record without a MAC":   {LinkObject("vm", "vmrtest", "dummy", nil), link("", mac), false},
	} {
		err := Owns(c.o, c.l)
		if c.ours != (err == nil) || !c.ours && !errors.Is(err, ErrForeignLink) {
			t.Errorf("%s: Owns = %v, want ours=%v", name, err, c.ours)
		}
	}
}
