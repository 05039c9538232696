package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
)

// TestNoHostLinkPlan: --no-host-link, VMRUN_NO_HOST_LINK and a config
// file's no-host-link each reach the run's plan (--dry-run --json: its
// no_host_link), which netsetup carries out (its TestBridgeNoHostLink and
// TestMacvtapNoHostLink); without any of them the plan's is false. The
// run plans in a namespace of its own, on a bridge there.
func TestNoHostLinkPlan(t *testing.T) {
	ns := testutil.NewNetns(t, "nohl")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	d := disk(t)
	rt := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "vm.yaml")
	if err := os.WriteFile(cfg, []byte("no-host-link: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--disk", d, "--qemu", "/bin/true", "--console", "none", "--net", "bridge:br0", "--name", "nohl", "--dry-run", "--json"}
	for _, c := range []struct {
		name string
		args []string
		env  string
		want bool
	}{
		{"default", nil, "", false},
		{"flag", []string{"--no-host-link"}, "", true},
		{"environment", nil, "VMRUN_NO_HOST_LINK=true", true},
		{"config file", []string{"--config", cfg}, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := vmrunProcess(ctx, []string{"ip", "netns", "exec", ns.Name}, append(append([]string(nil), base...), c.args...)...)
			cmd.Env = append(cmd.Env, rundir.EnvRoot+"="+rt)
			if c.env != "" {
				cmd.Env = append(cmd.Env, c.env)
			}
			out, runErr := cmd.Output()
			var dr struct {
				Plan struct {
					Mode       string `json:"mode"`
					NoHostLink *bool  `json:"no_host_link"`
				} `json:"plan"`
			}
			if err := json.Unmarshal(out, &dr); err != nil || dr.Plan.NoHostLink == nil {
				t.Fatalf("vmrun %v --dry-run --json (%v): no plan with no_host_link: %v\n%s", c.args, runErr, err, out)
			}
			if *dr.Plan.NoHostLink != c.want || dr.Plan.Mode != "bridge" {
				t.Errorf("%s: plan's mode %q, no_host_link %v; want bridge, %v", c.name, dr.Plan.Mode, *dr.Plan.NoHostLink, c.want)
			}
		})
	}
}
