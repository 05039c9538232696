package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/launcher"
)

func TestResolveCloudInit(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain, cloud := write("test.qcow2"), write("debian-12-genericcloud-amd64.qcow2")
	key, ud := write("id.pub"), write("user-data.yaml")
	seedDir := filepath.Join(dir, "seed")
	if err := os.Mkdir(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		c        Config
		seed     bool
		why, err string
	}{
		{"auto plain disk", Config{Disk: []string{plain}}, false, "", ""},
		{"auto cloud image", Config{Disk: []string{cloud}}, true, "looks like a cloud image", ""},
		{"auto ssh-key", Config{Disk: []string{plain}, SSHKey: []string{key}}, true, "--ssh-key", ""},
		{"auto user-data", Config{Disk: []string{plain}, UserData: ud}, true, "--user-data", ""},
		{"on", Config{Disk: []string{plain}, CloudInit: "on"}, true, "--cloud-init on", ""},
		{"off cloud image", Config{Disk: []string{cloud}, CloudInit: "off"}, false, "", ""},
		{"dir", Config{Disk: []string{plain}, CloudInit: seedDir}, true, "--cloud-init " + seedDir, ""},
		{"off with key", Config{Disk: []string{plain}, CloudInit: "off", SSHKey: []string{key}}, false, "", "--cloud-init off: --ssh-key"},
		{"dir with key", Config{Disk: []string{plain}, CloudInit: seedDir, SSHKey: []string{key}}, false, "", "used as given"},
		{"bad mode", Config{Disk: []string{plain}, CloudInit: "yes"}, false, "", `--cloud-init "yes" is not auto, on, off`},
		{"missing key", Config{Disk: []string{plain}, SSHKey: []string{filepath.Join(dir, "nokey.pub")}}, false, "", "--ssh-key"},
		{"missing user-data", Config{Disk: []string{plain}, UserData: filepath.Join(dir, "nope")}, false, "", "--user-data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s Spec
			for _, d := range tc.c.Disk {
				s.Disks = append(s.Disks, launcher.Disk{Path: d})
			}
			err := tc.c.resolveCloudInit(&s)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.CloudInit.Seed != tc.seed || !strings.Contains(s.CloudInit.Why, tc.why) {
				t.Errorf("seed %v (%q), want %v (%q)", s.CloudInit.Seed, s.CloudInit.Why, tc.seed, tc.why)
			}
		})
	}
}
