package nested

import (
	"strings"
	"testing"
	"time"
)

// boot is tested with sh standing in for QEMU.
func TestBoot(t *testing.T) {
	for name, tc := range map[string]struct {
		script  string
		timeout time.Duration
		status  int
		err     string
	}{
		"exit status":  {script: `echo "RIG: up"; echo "RIG-EXIT=3"`, status: 3},
		"no poweroff":  {script: `echo "RIG-EXIT=0"; exec sleep 60`, timeout: 30 * time.Second},
		"timeout":      {script: `echo "RIG: up"; exec sleep 60`, timeout: time.Second, err: "timeout"},
		"panic":        {script: `echo "Kernel panic - not syncing: Attempted to kill init!"`, err: "Kernel panic - not syncing: Attempted to kill init!"},
		"qemu failure": {script: `echo "qemu-system-x86_64: -kernel x: No such file" >&2; exit 1`, err: "exit status 1"},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.timeout == 0 {
				tc.timeout = 10 * time.Second
			}
			start := time.Now()
			r, err := boot("/bin/sh", []string{"-c", tc.script}, tc.timeout)
			if time.Since(start) > 20*time.Second {
				t.Errorf("boot took %s", time.Since(start))
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
