// Package netmemory keeps what --net auto learnt about the networks the
// host was on: per uplink network (its gateway's MAC, with the SSID on
// Wi-Fi), the mode a guest ended up in after its first choice did not
// work, so the next run on that network starts there. It is a small JSON file that survives
// reboots: $XDG_STATE_HOME/vmrun/networks.json, else /var/lib/vmrun for
// root and ~/.local/state/vmrun for anyone else.
package netmemory

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// EnvDir overrides the directory of the file (tests, packagers).
const EnvDir = "VMRUN_STATE_DIR"

// FileName is the file's name in Dir().
const FileName = "networks.json"

// Outcome is what vmrun learnt on one network.
type Outcome struct {
	// Mode is the mode the guest ended up in ("routed", "nat").
	Mode string `json:"mode"`
	// From is the mode that did not work ("macvtap", "bridge").
	From string `json:"from"`
	// Why says what went wrong with From, in words.
	Why string `json:"why"`
	// When it was learnt.
	When time.Time `json:"when"`
}

// String is the outcome as `vmrun net plan` shows it.
func (o Outcome) String() string {
	return fmt.Sprintf("%s (%s got no DHCP answer on %s)", o.Mode, o.From, o.When.Local().Format("2006-01-02"))
}

// Dir is the directory of the file.
func Dir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "vmrun")
	}
	if os.Geteuid() == 0 {
		return "/var/lib/vmrun"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "vmrun")
}

// file is the file's content.
type file struct {
	Networks map[string]Outcome `json:"networks"`
}

func load(path string) (file, error) {
	f := file{Networks: map[string]Outcome{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("network memory: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return file{Networks: map[string]Outcome{}}, fmt.Errorf("network memory %s: %w", path, err)
	}
	if f.Networks == nil {
		f.Networks = map[string]Outcome{}
	}
	return f, nil
}

// save writes f whole (a temporary file, then a rename).
func save(path string, f file) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("network memory: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("network memory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("network memory: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("network memory: %w", err)
	}
	return nil
}

// Path is the file's path.
func Path() string { return filepath.Join(Dir(), FileName) }

// Lookup returns the outcome remembered for network key.
func Lookup(key string) (Outcome, bool, error) {
	if key == "" {
		return Outcome{}, false, nil
	}
	f, err := load(Path())
	o, ok := f.Networks[key]
	return o, ok, err
}

// Remember records o for network key.
func Remember(key string, o Outcome) error {
	if key == "" {
		return nil
	}
	f, err := load(Path())
	if err != nil {
		return err
	}
	f.Networks[key] = o
	return save(Path(), f)
}

// Forget removes what is remembered for the given networks (all of them
// when keys is empty) and returns the keys it removed, sorted.
func Forget(keys ...string) ([]string, error) {
	f, err := load(Path())
	if err != nil && len(keys) > 0 {
		return nil, err
	}
	var gone []string
	for k := range f.Networks {
		if len(keys) == 0 || contains(keys, k) {
			gone = append(gone, k)
			delete(f.Networks, k)
		}
	}
	sort.Strings(gone)
	if len(gone) == 0 && err == nil {
		return nil, nil
	}
	return gone, save(Path(), f)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
