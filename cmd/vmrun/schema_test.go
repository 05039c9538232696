package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
)

// The JSON shapes documented in docs/json.md: every key of every object,
// by path. Keys are never left out (omitempty) when they do not apply.
var (
	planKeys = []string{"name", "mode", "parent", "uplink", "uplink_kind", "network", "mac", "mtu", "vhost", "queues",
		"link_name", "forwards", "passt", "nat", "gateway", "no_host_link", "reason", "notice", "guest_addr", "guest_ip"}
	planSchema = map[string][]string{
		"":           planKeys,
		"forwards[]": {"proto", "host_addr", "host_port", "guest_port"},
		"nat":        {"subnet", "resolv_conf"},
	}
	dryRunSchema = map[string][]string{
		"":                {"plan", "argv", "qmp_socket", "qemu_user"},
		"plan":            planKeys,
		"plan.forwards[]": planSchema["forwards[]"],
		"plan.nat":        planSchema["nat"],
	}
	lsSchema = map[string][]string{
		"[]":             {"name", "pid", "qemu_pid", "net", "parent", "uplink", "mac", "switches", "started", "uptime", "status", "addresses"},
		"[].addresses[]": {"addr", "source", "server", "learnt"},
	}
	whereKeys   = []string{"mode", "parent", "uplink", "mac"}
	watchSchema = map[string][]string{
		"":                {"time", "action", "from", "to", "why", "latency_ms", "uplink", "plan"},
		"from":            whereKeys,
		"to":              whereKeys,
		"uplink":          {"name", "kind", "mac", "gateway", "ssid", "bssid", "up", "oper_state"},
		"plan":            planKeys,
		"plan.forwards[]": planSchema["forwards[]"],
		"plan.nat":        planSchema["nat"],
	}
	doctorSchema = map[string][]string{
		"":         {"ok", "auto", "checks"},
		"auto":     {"mode", "parent", "reason", "notice"},
		"checks[]": {"id", "status", "summary", "fix"},
	}
)

func TestJSONSchemasDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []map[string][]string{planSchema, dryRunSchema, lsSchema, doctorSchema, watchSchema} {
		testutil.JSONSchemaDocumented(t, string(b), s)
	}
}

// TestPlanJSONSchema: net plan --json and --dry-run --json have every key
// in every mode this host can plan without privileges or special links.
func TestPlanJSONSchema(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	modes := []string{"none", "user", "auto"}
	if os.Geteuid() == 0 {
		modes = append(modes, "nat")
	}
	for _, m := range modes {
		out, errOut, code := vmrun(t, "net", "plan", "--net", m, "--json")
		if code != 0 {
			t.Fatalf("net plan --net %s --json: exit %d: %s", m, code, errOut)
		}
		testutil.CheckJSONSchema(t, "net plan --net "+m, []byte(out), planSchema)
		args := []string{"--disk", disk(t), "--qemu", "/bin/true", "--console", "none", "--net", m, "--dry-run", "--json"}
		if m == "user" || m == "nat" {
			args = append(args, "--forward", "tcp:18080:80")
		}
		out, errOut, code = vmrun(t, args...)
		if code != 0 {
			t.Fatalf("--dry-run --json --net %s: exit %d: %s", m, code, errOut)
		}
		testutil.CheckJSONSchema(t, "--dry-run --json --net "+m, []byte(out), dryRunSchema)
	}
}

// TestPlanWatchJSONSchema: the first line of net plan --watch --json (the
// plan it starts from) has every key, and the watch ends cleanly when its
// context does (as on Ctrl-C).
func TestPlanWatchJSONSchema(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	out, errb := testutil.NewLineBuffer(), testutil.NewLineBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- newApp(out, errb).RunContext(ctx, []string{"vmrun", "net", "plan", "--watch", "--json"})
	}()
	m, err := out.WaitFor(`(?m)^(\{.*\})$`, 30*time.Second)
	if err != nil {
		cancel()
		t.Fatalf("%v (stderr: %s; ended: %v)", err, errb, <-done)
	}
	testutil.CheckJSONSchema(t, "net plan --watch --json", []byte(m[1]), watchSchema)
	if !strings.Contains(m[1], `"action":"start"`) {
		t.Errorf("the first line is not the start: %s", m[1])
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("net plan --watch ended with %v", err)
	}
}

// TestLsJSONSchema: a running VM, one whose vmrun is gone, and a directory
// without a state file all have every key.
func TestLsJSONSchema(t *testing.T) {
	root := t.TempDir()
	t.Setenv(rundir.EnvRoot, root)
	live, _, err := rundir.Create(root, "live")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Remove() })
	if err := live.Update(func(s *rundir.State) {
		*s = rundir.State{Name: "live", PID: os.Getpid(), Mode: "user", MAC: "52:54:00:12:34:56", Started: time.Now()}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := live.SetAddress(rundir.Address{Addr: "10.0.2.15", Source: "user", Learnt: time.Now()}, false); err != nil {
		t.Fatal(err)
	}
	stale, _, err := rundir.Create(root, "stale")
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Update(func(s *rundir.State) { *s = rundir.State{Name: "stale", PID: 1, Mode: "bridge", Parent: "br0"} }); err != nil {
		t.Fatal(err)
	}
	_ = stale.Close()
	if err := os.Mkdir(root+"/empty", 0o700); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := vmrun(t, "ls", "--json")
	if code != 0 || strings.Count(out, `"name"`) != 3 {
		t.Fatalf("ls --json: exit %d: %s%s", code, out, errOut)
	}
	testutil.CheckJSONSchema(t, "ls --json", []byte(out), lsSchema)
	if !strings.Contains(out, `"addresses": null`) || !strings.Contains(out, `"addr": "10.0.2.15"`) {
		t.Errorf("ls --json: want the live VM's address, and null for the others:\n%s", out)
	}
	if !strings.Contains(out, `"started": null`) {
		t.Errorf("ls --json: an unknown start time is not null:\n%s", out)
	}
}

func TestDoctorJSONSchema(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	out, errOut, _ := vmrun(t, "doctor", "--json")
	testutil.CheckJSONSchema(t, "doctor --json", []byte(out), doctorSchema)
	if t.Failed() {
		t.Log(errOut)
	}
}
