package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/netsetup"
)

func TestSSHForward(t *testing.T) {
	seed := config.Spec{CloudInit: config.CloudInit{Seed: true}}
	// User mode with a seed: a forward from a free loopback port to 22.
	plan := netsetup.Plan{Mode: netsetup.User}
	got, err := sshForward(seed, &plan)
	if err != nil || !strings.HasPrefix(got, "127.0.0.1:") || len(plan.Forwards) != 1 ||
		plan.Forwards[0].GuestPort != 22 || plan.Forwards[0].HostAddr != "127.0.0.1" {
		t.Fatalf("user mode: %q %v, forwards %+v", got, err, plan.Forwards)
	}
	// The user's own forward to port 22 is taken, none is added.
	plan = netsetup.Plan{Mode: netsetup.User, Forwards: []netsetup.Forward{{Proto: "tcp", HostPort: 2222, GuestPort: 22}}}
	if got, err := sshForward(seed, &plan); err != nil || got != "127.0.0.1:2222" || len(plan.Forwards) != 1 {
		t.Errorf("user mode with --forward tcp:2222:22: %q %v, forwards %+v", got, err, plan.Forwards)
	}
	// Without a seed, or in a mode where the guest has its own address: none.
	for _, tc := range []struct {
		spec config.Spec
		mode netsetup.Mode
	}{{config.Spec{}, netsetup.User}, {seed, netsetup.Macvtap}, {seed, netsetup.NAT}} {
		plan := netsetup.Plan{Mode: tc.mode}
		if got, err := sshForward(tc.spec, &plan); err != nil || got != "" || len(plan.Forwards) != 0 {
			t.Errorf("%s, seed %v: %q %v, forwards %+v", tc.mode, tc.spec.CloudInit.Seed, got, err, plan.Forwards)
		}
	}
}

func TestLoginOfKeys(t *testing.T) {
	dir := t.TempDir()
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1pZGRsZS1vZi10aGUtcm9hZC10ZXN0LWtleS0x k@h"
	pub := filepath.Join(dir, "id.pub")
	for p, body := range map[string]string{pub: key + "\n", filepath.Join(dir, "id"): "PRIVATE"} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := loginOf(config.CloudInit{Keys: []string{pub}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.keys) != 1 || l.keys[0] != key || l.private != filepath.Join(dir, "id") || l.user == "" || l.user == "root" {
		t.Errorf("loginOf: %+v", l)
	}
}

// TestSeedFiles: a seed directory is taken as given, with no login; vmrun's
// own seed merges --user-data and has the VM's name and MAC.
func TestSeedFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"meta-data": "instance-id: mine\n", "user-data": "#cloud-config\n{}\n", "extra.yaml": "#cloud-config\npackages: [htop]\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mac, _ := netsetup.ParseMAC("52:54:00:ab:cd:ef")
	files, login, err := seedFiles(config.CloudInit{Seed: true, Dir: dir}, "web", mac)
	if err != nil || string(files["meta-data"]) != "instance-id: mine\n" || len(files) != 2 || login.user != "" {
		t.Errorf("seed directory: %q %+v %v", files, login, err)
	}
	files, _, err = seedFiles(config.CloudInit{Seed: true, UserData: filepath.Join(dir, "extra.yaml")}, "web", mac)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"user-data": "- htop", "meta-data": "local-hostname: web", "network-config": "52:54:00:ab:cd:ef"} {
		if !strings.Contains(string(files[name]), want) {
			t.Errorf("%s lacks %q:\n%s", name, want, files[name])
		}
	}
	// Not a cloud-config: a usage error naming --user-data.
	_, _, err = seedFiles(config.CloudInit{Seed: true, UserData: filepath.Join(dir, "meta-data")}, "web", mac)
	if err == nil || exitcode.Of(err) != exitcode.Usage || !strings.Contains(err.Error(), "--user-data") {
		t.Errorf("a user-data that is not a cloud-config: %v", err)
	}
}
