// Package cloudinit builds the NoCloud seed vmrun gives a cloud image: a
// small ISO9660 image with the volume id "cidata" holding meta-data (the
// instance id and the hostname), user-data (a #cloud-config with a user
// and their SSH keys, merged with the user's own) and network-config
// (version 2: DHCP on the NIC with the VM's MAC). cloud-init finds it by
// its label, reads it once per instance id and configures the guest; the
// image is written with go-diskfs (Rock Ridge names, so "meta-data" keeps
// its dash), never by an external tool.
package cloudinit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// SeedFile is the seed image's name in the VM's runtime directory.
const SeedFile = "cidata.iso"

// The seed's files, as NoCloud names them.
const (
	MetaData      = "meta-data"
	UserData      = "user-data"
	NetworkConfig = "network-config"
	VendorData    = "vendor-data"
	// Label is the volume id cloud-init looks for.
	Label = "cidata"
	// cloudConfigHeader starts every user-data in cloud-config form.
	cloudConfigHeader = "#cloud-config"
)

// Seed is what vmrun puts into a guest's NoCloud seed.
type Seed struct {
	// Hostname is the guest's hostname (meta-data local-hostname): the VM's name.
	Hostname string
	// User is the account created in the guest, with passwordless sudo.
	User string
	// Keys are the user's SSH public keys (authorized_keys lines).
	Keys []string
	// MAC is the guest NIC's MAC; nil: no network-config (the image's own default).
	MAC net.HardwareAddr
	// Extra is the user's own #cloud-config (--user-data), merged in; nil: none.
	Extra []byte
}

// ErrUserData wraps every problem with a --user-data file.
var ErrUserData = errors.New("--user-data")

// Files renders the seed's files.
func (s Seed) Files() (map[string][]byte, error) {
	ud, err := s.userData()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{UserData: ud}
	if s.MAC != nil {
		files[NetworkConfig] = networkConfig(s.MAC)
	}
	// The instance id changes with the seed's content, so cloud-init
	// applies a changed seed (new keys) to a kept disk, and only then.
	h := sha256.New()
	h.Write([]byte(s.Hostname))
	h.Write(ud)
	h.Write(files[NetworkConfig])
	iid := "vmrun-" + s.Hostname + "-" + hex.EncodeToString(h.Sum(nil))[:12]
	md, err := yaml.Marshal(map[string]string{"instance-id": iid, "local-hostname": s.Hostname})
	if err != nil {
		return nil, fmt.Errorf("meta-data: %w", err)
	}
	files[MetaData] = md
	return files, nil
}

// userData is vmrun's cloud-config with the user's own merged in.
func (s Seed) userData() ([]byte, error) {
	user := map[string]any{
		"name":        s.User,
		"sudo":        "ALL=(ALL) NOPASSWD:ALL",
		"shell":       "/bin/sh",
		"lock_passwd": true,
	}
	if len(s.Keys) > 0 {
		user["ssh_authorized_keys"] = s.Keys
	}
	cfg := map[string]any{
		"hostname":          s.Hostname,
		"preserve_hostname": false,
		"users":             []any{user},
	}
	if s.Extra != nil {
		if err := merge(cfg, s.Extra); err != nil {
			return nil, err
		}
	}
	body, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("user-data: %w", err)
	}
	return append([]byte(cloudConfigHeader+"\n"), body...), nil
}

// merge puts the user's cloud-config into cfg: their value wins for each
// top-level key, except the lists users and ssh_authorized_keys, whose
// items are appended to vmrun's.
func merge(cfg map[string]any, extra []byte) error {
	first, _, _ := bytes.Cut(extra, []byte("\n"))
	if strings.TrimSpace(string(first)) != cloudConfigHeader {
		return fmt.Errorf("%w: the file must be a cloud-config, starting with the line %q (vmrun merges it into its own; for a script or a MIME multipart, give a whole seed with --cloud-init DIR)", ErrUserData, cloudConfigHeader)
	}
	var theirs map[string]any
	if err := yaml.Unmarshal(extra, &theirs); err != nil {
		return fmt.Errorf("%w: not valid YAML: %w", ErrUserData, err)
	}
	for k, v := range theirs {
		if k != "users" && k != "ssh_authorized_keys" {
			cfg[k] = v
			continue
		}
		items, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%w: %s must be a list", ErrUserData, k)
		}
		mine, _ := cfg[k].([]any)
		cfg[k] = append(slices.Clone(mine), items...)
	}
	return nil
}

// networkConfig is a version 2 network config: DHCP (v4, and v6 with
// router advertisements) on the NIC with the guest's MAC, whatever the
// image names it. The same for every network mode: vmrun's attachments
// (its own DHCP server in routed and nat modes, its DHCP proxy on
// ipvtap) answer a plain DHCP client.
func networkConfig(mac net.HardwareAddr) []byte {
	return []byte(fmt.Sprintf(`version: 2
ethernets:
  vmrun0:
    match:
      macaddress: "%s"
    dhcp4: true
    dhcp6: true
`, mac))
}

// ReadDir reads a seed the user made (--cloud-init DIR): meta-data and
// user-data are needed, network-config and vendor-data are taken when
// there; nothing else is.
func ReadDir(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, name := range []string{MetaData, UserData, NetworkConfig, VendorData} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && (name == NetworkConfig || name == VendorData) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("--cloud-init %s: %w (a seed directory holds meta-data and user-data, and optionally network-config and vendor-data)", dir, err)
		}
		files[name] = b
	}
	return files, nil
}

// PublicKeys returns the keys of the files *.pub in dir (~/.ssh), one
// authorized_keys line each, and the first one's private key path when
// that file exists.
func PublicKeys(dir string) (keys []string, private string, err error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", dir, err)
	}
	for _, p := range paths {
		k, err := ReadKey(p)
		if err != nil {
			return nil, "", err
		}
		keys = append(keys, k)
		if priv := strings.TrimSuffix(p, ".pub"); private == "" && fileExists(priv) {
			private = priv
		}
	}
	return keys, private, nil
}

// ReadKey reads one public key file (--ssh-key): its first line that
// looks like a key.
func ReadKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--ssh-key %s: %w", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if f := strings.Fields(l); len(f) >= 2 && (strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
			return l, nil
		}
		break
	}
	return "", fmt.Errorf("--ssh-key %s is not an SSH public key (give the .pub file, e.g. ~/.ssh/id_ed25519.pub)", path)
}

// PrivateKeyOf returns the private key next to a public key file
// (KEY.pub → KEY), or "" when there is none.
func PrivateKeyOf(pub string) string {
	if priv := strings.TrimSuffix(pub, ".pub"); priv != pub && fileExists(priv) {
		return priv
	}
	return ""
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
