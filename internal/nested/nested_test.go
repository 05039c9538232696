package nested

import (
	"strings"
	"testing"
	"time"
)

// boot is tested with sh standing in for QEMU. Where the stand-in never
// ends by itself (it sleeps an hour), boot must have killed it: its exit
// is "signal: killed" (no timing: a loaded machine is slow, not wrong).
func TestBoot(t *testing.T) {
	for name, tc := range map[string]struct {
		script  string
		timeout time.Duration
		status  int
		err     string
		killed  bool
	}{
		"exit status":  {script: `echo "RIG: up"; echo "RIG-EXIT=3"`, status: 3},
		"no poweroff":  {script: `echo "RIG-EXIT=0"; exec sleep 3600`, killed: true},
		"timeout":      {script: `echo "RIG: up"; exec sleep 3600`, timeout: time.Second, err: "timeout", killed: true},
		"panic":        {script: `echo "Kernel panic - not syncing: Attempted to kill init!"`, err: "Kernel panic - not syncing: Attempted to kill init!"},
		"qemu failure": {script: `echo "qemu-system-x86_64: -kernel x: No such file" >&2; exit 1`, err: "exit status 1"},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.timeout == 0 {
				tc.timeout = 2 * time.Minute // generous: sh prints at once
			}
			type res struct {
				r   *Result
				err error
			}
			c := make(chan res, 1)
			go func() { r, err := boot("/bin/sh", []string{"-c", tc.script}, tc.timeout); c <- res{r, err} }()
			var r *Result
			var err error
			select {
			case x := <-c:
				r, err = x.r, x.err
			case <-time.After(tc.timeout + 2*time.Minute):
				t.Fatalf("boot did not return within %s: it waits for a stand-in that never ends by itself", tc.timeout+2*time.Minute)
			}
			if killed := strings.Contains(r.Output, markerQEMU+" signal: killed"); killed != tc.killed {
				t.Errorf("stand-in killed: %v, want %v\n%s", killed, tc.killed, r.Output)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v\n%s", err, r.Output)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case err == nil && r.Status != tc.status:
				t.Errorf("status %d, want %d", r.Status, tc.status)
			}
		})
	}
}
