package cloudinit

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1pZGRsZS1vZi10aGUtcm9hZC10ZXN0LWtleS0x alice@laptop"

func TestSeedISORoundTrip(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	files, err := Seed{Hostname: "web1", User: "alice", Keys: []string{testKey}, MAC: mac}.Files()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := WriteISO(path, files); err != nil {
		t.Fatal(err)
	}
	label, got, err := ReadISO(path)
	if err != nil {
		t.Fatal(err)
	}
	if label != Label {
		t.Errorf("label %q, want %q", label, Label)
	}
	if !reflect.DeepEqual(got, files) {
		t.Errorf("read back %q, wrote %q", got, files)
	}
	var md map[string]string
	if err := yaml.Unmarshal(got[MetaData], &md); err != nil {
		t.Fatal(err)
	}
	if md["local-hostname"] != "web1" || !strings.HasPrefix(md["instance-id"], "vmrun-web1-") {
		t.Errorf("meta-data %q", got[MetaData])
	}
	if !strings.Contains(string(got[NetworkConfig]), `macaddress: "52:54:00:12:34:56"`) {
		t.Errorf("network-config %q", got[NetworkConfig])
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".seed-work-*")); len(left) != 0 {
		t.Errorf("work files left: %v", left)
	}
}

// userCfg parses a user-data into its users and top-level keys.
func userCfg(t *testing.T, ud []byte) map[string]any {
	t.Helper()
	if !strings.HasPrefix(string(ud), "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config: %q", ud)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(ud, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestUserDataMerge(t *testing.T) {
	extra := []byte("#cloud-config\nhostname: theirs\npackages: [htop]\nusers:\n  - name: bob\nssh_authorized_keys: [\"ssh-rsa AAAA bob\"]\n")
	files, err := Seed{Hostname: "web1", User: "alice", Keys: []string{testKey}, Extra: extra}.Files()
	if err != nil {
		t.Fatal(err)
	}
	cfg := userCfg(t, files[UserData])
	if cfg["hostname"] != "theirs" {
		t.Errorf("hostname %v: theirs should win", cfg["hostname"])
	}
	if !reflect.DeepEqual(cfg["packages"], []any{"htop"}) {
		t.Errorf("packages %v", cfg["packages"])
	}
	users := cfg["users"].([]any)
	if len(users) != 2 || users[0].(map[string]any)["name"] != "alice" || users[1].(map[string]any)["name"] != "bob" {
		t.Errorf("users %v: vmrun's first, then theirs", users)
	}
	if keys := users[0].(map[string]any)["ssh_authorized_keys"]; !reflect.DeepEqual(keys, []any{testKey}) {
		t.Errorf("alice's keys %v", keys)
	}
	if _, ok := files[NetworkConfig]; ok {
		t.Errorf("network-config without a MAC")
	}
	// Another seed, another instance id.
	other, _ := Seed{Hostname: "web1", User: "alice"}.Files()
	if string(other[MetaData]) == string(files[MetaData]) {
		t.Errorf("same instance id for different seeds: %q", other[MetaData])
	}
}

func TestUserDataRefused(t *testing.T) {
	for _, extra := range []string{"#!/bin/sh\necho hi\n", "#cloud-config\nusers: bob\n", "#cloud-config\n: [\n"} {
		_, err := Seed{Hostname: "h", User: "u", Extra: []byte(extra)}.Files()
		if !errors.Is(err, ErrUserData) {
			t.Errorf("%q: got %v, want an ErrUserData", extra, err)
		}
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub := write("id_ed25519.pub", "\n"+testKey+"\n")
	write("id_ed25519", "PRIVATE")
	write("notakey.txt", "x")
	keys, priv, err := PublicKeys(dir)
	if err != nil || !reflect.DeepEqual(keys, []string{testKey}) || priv != filepath.Join(dir, "id_ed25519") {
		t.Errorf("PublicKeys: %q %q %v", keys, priv, err)
	}
	if PrivateKeyOf(pub) != filepath.Join(dir, "id_ed25519") {
		t.Errorf("PrivateKeyOf(%s) = %q", pub, PrivateKeyOf(pub))
	}
	if _, err := ReadKey(write("bad.pub", "-----BEGIN OPENSSH PRIVATE KEY-----\n")); err == nil {
		t.Errorf("a private key was taken as a public key")
	}
	if _, err := ReadKey(filepath.Join(dir, "missing.pub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
}

func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadDir(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty dir: %v", err)
	}
	for _, n := range []string{MetaData, UserData} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := ReadDir(dir)
	if err != nil || len(files) != 2 || string(files[UserData]) != UserData {
		t.Errorf("ReadDir: %q %v", files, err)
	}
}
