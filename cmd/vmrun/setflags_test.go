package main

import (
	"io"
	"slices"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestSetFlags: setFlags says of every run option what c.IsSet says, for
// options given on the command line (string, list, bool, int), through
// their environment variables, or not at all, with and without the run
// command.
func TestSetFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string // the options set
	}{
		{"nothing", nil, nil, nil},
		{"command line", nil, []string{"--disk", "a.qcow2", "--disk", "b.qcow2", "--mem", "1G", "--snapshot", "--cpus", "2", "-v"}, []string{"disk", "mem", "snapshot", "cpus", "verbose"}},
		{"environment", map[string]string{"VMRUN_NET": "user", "VMRUN_SNAPSHOT": "true", "VMRUN_SHUTDOWN_GRACE": "5s"}, nil, []string{"net", "snapshot", "shutdown-grace"}},
		{"both", map[string]string{"VMRUN_MEM": "2G"}, []string{"--mem", "768M", "--net", "none"}, []string{"mem", "net"}},
	} {
		for _, sub := range []bool{false, true} {
			name := tc.name
			if sub {
				name += ", vmrun run"
			}
			t.Run(name, func(t *testing.T) {
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				app := newApp(io.Discard, io.Discard)
				ran := false
				check := func(c *cli.Context) error {
					ran = true
					set := setFlags(c)
					var got []string
					for _, f := range runFlags() {
						for _, n := range f.Names() {
							if set[n] != c.IsSet(n) {
								t.Errorf("option %s: setFlags says %v, IsSet %v", n, set[n], c.IsSet(n))
							}
							if set[n] && n == f.Names()[0] {
								got = append(got, n)
							}
						}
					}
					want := slices.Clone(tc.want)
					slices.Sort(got)
					slices.Sort(want)
					if !slices.Equal(got, want) {
						t.Errorf("options set %q, want %q", got, want)
					}
					return nil
				}
				app.Action = check
				for _, cmd := range app.Commands {
					if cmd.Name == "run" {
						cmd.Action = check
					}
				}
				args := append([]string{"vmrun"}, tc.args...)
				if sub {
					args = append([]string{"vmrun", "run"}, tc.args...)
				}
				if err := app.Run(args); err != nil || !ran {
					t.Fatalf("run %q: %v (action ran: %v)", args, err, ran)
				}
			})
		}
	}
}
