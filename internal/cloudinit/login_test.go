package cloudinit

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoginOfKeys(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "id.pub")
	for p, body := range map[string]string{pub: testKey + "\n", filepath.Join(dir, "id"): "PRIVATE"} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := LoginOf([]string{pub})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Keys) != 1 || l.Keys[0] != testKey || l.Private != filepath.Join(dir, "id") || l.User == "" || l.User == "root" {
		t.Errorf("LoginOf: %+v", l)
	}
}

// TestPrepare: a seed directory is taken as given, with no login; vmrun's
// own seed merges --user-data and has the VM's name and MAC.
func TestPrepare(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"meta-data": "instance-id: mine\n", "user-data": "#cloud-config\n{}\n", "extra.yaml": "#cloud-config\npackages: [htop]\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mac, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	files, login, err := Prepare(Request{Dir: dir, Hostname: "web", MAC: mac})
	if err != nil || string(files["meta-data"]) != "instance-id: mine\n" || len(files) != 2 || login.User != "" {
		t.Errorf("seed directory: %q %+v %v", files, login, err)
	}
	files, _, err = Prepare(Request{UserData: filepath.Join(dir, "extra.yaml"), Hostname: "web", MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"user-data": "- htop", "meta-data": "local-hostname: web", "network-config": "52:54:00:ab:cd:ef"} {
		if !strings.Contains(string(files[name]), want) {
			t.Errorf("%s lacks %q:\n%s", name, want, files[name])
		}
	}
	// Not a cloud-config: an error naming --user-data (vmrun's usage error).
	_, _, err = Prepare(Request{UserData: filepath.Join(dir, "meta-data"), Hostname: "web", MAC: mac})
	if err == nil || !errors.Is(err, ErrUserData) || !strings.Contains(err.Error(), "--user-data") {
		t.Errorf("a user-data that is not a cloud-config: %v", err)
	}
}
