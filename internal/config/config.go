// Package config holds a VM's settings as the user gives them — YAML file,
// VMRUN_* environment variables, command-line flags — and turns them into a
// validated Spec. Every problem is a usage error (exit code 1) naming the
// setting and the fix, found before anything is created.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the raw settings. Its YAML keys equal the long flag names, so a
// config file is the flags written as a map.
type Config struct {
	Disk          []string `yaml:"disk"`
	Snapshot      bool     `yaml:"snapshot"`
	Name          string   `yaml:"name"`
	Mem           string   `yaml:"mem"`
	CPUs          int      `yaml:"cpus"`
	MAC           string   `yaml:"mac"`
	Kernel        string   `yaml:"kernel"`
	Initrd        string   `yaml:"initrd"`
	Append        string   `yaml:"append"`
	Net           string   `yaml:"net"`
	Uplink        string   `yaml:"uplink"`
	Forward       []string `yaml:"forward"`
	GuestIP       string   `yaml:"guest-ip"`
	Gateway       string   `yaml:"gateway"`
	NoHostLink    bool     `yaml:"no-host-link"`
	FollowUplink  string   `yaml:"follow-uplink"`
	Timeout       string   `yaml:"timeout"`
	ShutdownGrace string   `yaml:"shutdown-grace"`
	WaitAddress   string   `yaml:"wait-address"`
	QEMU          string   `yaml:"qemu"`
	QEMUArg       []string `yaml:"qemu-arg"`
	Console       string   `yaml:"console"`
	SerialLog     string   `yaml:"serial-log"`
	Accel         string   `yaml:"accel"`
	NATSubnet     string   `yaml:"nat-subnet"`
	ResolvConf    string   `yaml:"resolv-conf"`
	Agent         string   `yaml:"agent"`
	Exec          []string `yaml:"exec"`
	Share         []string `yaml:"share"`
	Timestamps    bool     `yaml:"timestamps"`
	CloudInit     string   `yaml:"cloud-init"`
	SSHKey        []string `yaml:"ssh-key"`
	UserData      string   `yaml:"user-data"`
	// QEMUPrivileged keeps QEMU as root with every capability (unsafe).
	QEMUPrivileged bool `yaml:"qemu-privileged"`
}

// Defaults returns the settings used when nothing else is given.
func Defaults() Config {
	return Config{
		Mem:           "512M",
		CPUs:          1,
		Net:           "auto",
		ShutdownGrace: "60s",
		QEMU:          "qemu-system-x86_64",
		Console:       "auto",
		Accel:         "auto",
		Agent:         "on",
		CloudInit:     "auto",
		FollowUplink:  "on",
	}
}

// ErrConfigFile wraps every problem found in a config file.
var ErrConfigFile = errors.New("config file")

// LoadFile reads a YAML config file on top of c. Unknown keys are errors
// (a typo must not be ignored silently). Relative paths in the file are
// taken relative to the file's directory. set receives every key present.
func LoadFile(path string, c *Config) (set map[string]bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s cannot be read: %v", ErrConfigFile, path, errors.Unwrap(err))
	}
	var keys map[string]any
	if err := yaml.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("%w %s is not valid YAML: %v", ErrConfigFile, path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w %s: %s (keys are the long flag names, e.g. disk, mem, net)", ErrConfigFile, path, yamlMsg(err))
	}
	set = make(map[string]bool, len(keys))
	for k := range keys {
		set[k] = true
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		p = expand(p)
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if set["disk"] {
		for i := range c.Disk {
			c.Disk[i] = rel(c.Disk[i])
		}
	}
	if set["share"] {
		for i, sh := range c.Share {
			dir, opts, _ := strings.Cut(sh, ":")
			if opts != "" {
				opts = ":" + opts
			}
			c.Share[i] = rel(dir) + opts
		}
	}
	if set["ssh-key"] {
		for i := range c.SSHKey {
			c.SSHKey[i] = rel(c.SSHKey[i])
		}
	}
	if set["cloud-init"] && !map[string]bool{"auto": true, "on": true, "off": true}[c.CloudInit] {
		c.CloudInit = rel(c.CloudInit)
	}
	for k, p := range map[string]*string{"kernel": &c.Kernel, "initrd": &c.Initrd, "serial-log": &c.SerialLog, "resolv-conf": &c.ResolvConf, "user-data": &c.UserData} {
		if set[k] {
			*p = rel(*p)
		}
	}
	return set, nil
}

// expand replaces $VAR/${VAR} and a leading ~/ (the user's home) in a path
// from a config file.
func expand(p string) string {
	p = os.ExpandEnv(p)
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	return p
}

func yamlMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	return strings.ReplaceAll(msg, "not found in type config.Config", "is not a known key")
}

// ParseMem parses a memory size: a number with an optional unit K, M, G, T
// (powers of 1024, optional "i"/"B": 512M, 2G, 2GiB); a bare number is MiB.
// The result is in MiB.
func ParseMem(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	bad := fmt.Errorf("--mem %q is not a memory size: write e.g. 512M or 2G", s)
	if t == "" {
		return 0, bad
	}
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "B"), "I")
	mult := 1.0
	switch {
	case strings.HasSuffix(u, "K"):
		mult, u = 1.0/1024, u[:len(u)-1]
	case strings.HasSuffix(u, "M"):
		u = u[:len(u)-1]
	case strings.HasSuffix(u, "G"):
		mult, u = 1024, u[:len(u)-1]
	case strings.HasSuffix(u, "T"):
		mult, u = 1024*1024, u[:len(u)-1]
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(u), 64)
	if err != nil {
		return 0, bad
	}
	if f <= 0 {
		return 0, fmt.Errorf("--mem %q must be more than zero: write e.g. 512M or 2G", s)
	}
	mib := f * mult
	if mib < 16 {
		return 0, fmt.Errorf("--mem %q is too small for a guest: give at least 16M (e.g. 512M)", s)
	}
	if mib > 16*1024*1024 {
		return 0, fmt.Errorf("--mem %q is larger than 16T: give a realistic size (e.g. 2G)", s)
	}
	return uint64(mib), nil
}

// ParseDuration parses a non-negative duration flag ("0" means none).
func ParseDuration(flag, s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--%s %q is not a duration: write e.g. 90s, 5m or 1h30m", flag, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("--%s %q is negative: give a positive duration, or 0 for none", flag, s)
	}
	return d, nil
}
