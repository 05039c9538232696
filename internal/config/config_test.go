package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// writeFile creates a file in a temp dir and returns its path.
func writeFile(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func qcow2(t *testing.T) string {
	head := make([]byte, 1024)
	copy(head, "QFI\xfb\x00\x00\x00\x03")
	return writeFile(t, "web.qcow2", head, 0o644)
}

func TestDetectFormat(t *testing.T) {
	dir := t.TempDir()
	raw := writeFile(t, "disk.img", make([]byte, 4096), 0o644)
	cases := []struct {
		name, path, want, errPart string
	}{
		{"qcow2", qcow2(t), FormatQcow2, ""},
		{"raw by content, not name", raw, FormatRaw, ""},
		{"qcow2 named .img", writeFile(t, "x.img", append([]byte("QFI\xfb\x00\x00\x00\x02"), make([]byte, 504)...), 0o644), FormatQcow2, ""},
		{"missing", filepath.Join(dir, "nope.qcow2"), "", "does not exist"},
		{"directory", dir, "", "is a directory"},
		{"empty", writeFile(t, "empty.qcow2", nil, 0o644), "", "is empty"},
		{"vmdk", writeFile(t, "a.vmdk", append([]byte("KDMV"), make([]byte, 508)...), 0o644), "", "VMDK format"},
		{"qcow1", writeFile(t, "old.qcow", append([]byte("QFI\xfb\x00\x00\x00\x01"), make([]byte, 504)...), 0o644), "", "version 1"},
		{"odd size", writeFile(t, "notes.txt", []byte("hello world"), 0o644), "", "not a multiple of 512"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DetectFormat(c.path, false)
			if c.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), c.errPart) {
					t.Fatalf("DetectFormat(%s) = %q, %v; want error containing %q", c.path, got, err, c.errPart)
				}
				if !strings.Contains(err.Error(), c.path) {
					t.Errorf("error does not name the file: %v", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("DetectFormat = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestDetectFormatUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		testutil.SkipElsewhere(t, "test/e2e.TestUnprivilegedTapRefused", "root reads every file; an unreadable disk is refused to nobody")
	}
	p := writeFile(t, "secret.qcow2", make([]byte, 512), 0o000)
	if _, err := DetectFormat(p, false); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("got %v", err)
	}
}

func TestParseMem(t *testing.T) {
	good := map[string]uint64{"512M": 512, "2G": 2048, "2GiB": 2048, "1024": 1024, "1.5G": 1536, "65536K": 64, "512mb": 512}
	for in, want := range good {
		if got, err := ParseMem(in); err != nil || got != want {
			t.Errorf("ParseMem(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1G", "lots", "8K", "1Q", "99999T"} {
		if _, err := ParseMem(in); err == nil {
			t.Errorf("ParseMem(%q) accepted", in)
		}
	}
}

func TestParseDuration(t *testing.T) {
	if d, err := ParseDuration("timeout", "90s"); err != nil || d != 90*time.Second {
		t.Fatalf("got %v %v", d, err)
	}
	if d, err := ParseDuration("timeout", "0"); err != nil || d != 0 {
		t.Fatalf("got %v %v", d, err)
	}
	for _, in := range []string{"-5s", "soon", "5"} {
		if _, err := ParseDuration("timeout", in); err == nil || !strings.Contains(err.Error(), "--timeout") {
			t.Errorf("ParseDuration(%q): %v", in, err)
		}
	}
}

func TestResolveDefaults(t *testing.T) {
	c := Defaults()
	c.Disk = []string{qcow2(t)}
	s, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "web" || s.MemMiB != 512 || s.CPUs != 1 || s.NetMode != netsetup.Auto || s.Grace != 60*time.Second || !s.FollowUplink {
		t.Fatalf("unexpected spec: %+v", s)
	}
	if s.MAC.String() != netsetup.DeriveMAC("web").String() || s.MACSet {
		t.Fatalf("MAC %s not derived from the name", s.MAC)
	}
	if s.Disks[0].Format != FormatQcow2 || !filepath.IsAbs(s.Disks[0].Path) {
		t.Fatalf("disk %+v", s.Disks[0])
	}
}

// TestFollowUplinkOff: --follow-uplink off (also `follow-uplink: off` in
// a config file) turns the watch off.
func TestFollowUplinkOff(t *testing.T) {
	c := Defaults()
	c.Disk = []string{qcow2(t)}
	p := writeFile(t, "c.yaml", []byte("follow-uplink: off\n"), 0o644)
	if _, err := LoadFile(p, &c); err != nil {
		t.Fatal(err)
	}
	s, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if s.FollowUplink {
		t.Error("follow-uplink: off in the config file left FollowUplink on")
	}
}

func TestResolveErrors(t *testing.T) {
	disk := qcow2(t)
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"nothing to boot":    {func(c *Config) { c.Disk = nil }, "nothing to boot"},
		"zero cpus":          {func(c *Config) { c.CPUs = 0 }, "--cpus 0"},
		"negative cpus":      {func(c *Config) { c.CPUs = -2 }, "--cpus -2"},
		"zero mem":           {func(c *Config) { c.Mem = "0" }, "--mem"},
		"negative mem":       {func(c *Config) { c.Mem = "-512M" }, "--mem"},
		"bad mac":            {func(c *Config) { c.MAC = "52:54:00:zz:00:01" }, "not valid"},
		"multicast mac":      {func(c *Config) { c.MAC = "01:00:5e:00:00:01" }, "multicast"},
		"unknown mode":       {func(c *Config) { c.Net = "wifi" }, "unknown network mode"},
		"name with slash":    {func(c *Config) { c.Name = "a/b" }, "--name"},
		"name too long":      {func(c *Config) { c.Name = strings.Repeat("x", 41) }, "at most 40"},
		"forward on bridge":  {func(c *Config) { c.Net = "bridge:br0"; c.Forward = []string{"tcp:8080:80"} }, "--forward works only"},
		"bad forward":        {func(c *Config) { c.Forward = []string{"tcp:80"} }, "--forward"},
		"bad console":        {func(c *Config) { c.Console = "vnc" }, "--console"},
		"bad timeout":        {func(c *Config) { c.Timeout = "-1s" }, "--timeout"},
		"initrd alone":       {func(c *Config) { c.Initrd = disk }, "--initrd needs --kernel"},
		"missing kernel":     {func(c *Config) { c.Kernel = "/nonexistent/vmlinuz" }, "--kernel /nonexistent/vmlinuz does not exist"},
		"serial-log dir":     {func(c *Config) { c.SerialLog = "/nonexistent/dir/log" }, "--serial-log"},
		"gateway alone":      {func(c *Config) { c.Gateway = "192.168.1.1" }, "--gateway needs --guest-ip"},
		"bad guest ip":       {func(c *Config) { c.GuestIP = "192.168.1.5" }, "--guest-ip"},
		"empty disk":         {func(c *Config) { c.Disk = []string{""} }, "--disk is empty"},
		"mode takes no name": {func(c *Config) { c.Net = "user:eth0" }, "takes no interface"},
		"bad follow-uplink":  {func(c *Config) { c.FollowUplink = "yes" }, "--follow-uplink \"yes\" is not on or off"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			c.Disk = []string{disk}
			tc.mod(&c)
			_, err := c.Resolve()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Resolve() error = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestNameFromDisk(t *testing.T) {
	cases := map[string]string{
		"/images/debian-12.qcow2":                "debian-12",
		"/images/my disk!.img":                   "my-disk",
		"/x/.qcow2":                              "vm",
		"/x/" + strings.Repeat("a", 60) + ".raw": strings.Repeat("a", 40),
	}
	for in, want := range cases {
		got, err := resolveName("", []string{in}, "")
		if err != nil || got != want {
			t.Errorf("resolveName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vm.yaml")
	yaml := "disk: [images/a.qcow2, /abs/b.qcow2]\nmem: 2G\ncpus: 2\nnet: user\nforward:\n  - tcp:2222:22\nserial-log: logs/console.log\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	set, err := LoadFile(cfgPath, &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Disk[0] != filepath.Join(dir, "images/a.qcow2") || c.Disk[1] != "/abs/b.qcow2" {
		t.Errorf("disk paths not relative to the file: %v", c.Disk)
	}
	if c.SerialLog != filepath.Join(dir, "logs/console.log") {
		t.Errorf("serial-log = %s", c.SerialLog)
	}
	if c.Mem != "2G" || c.CPUs != 2 || c.Net != "user" || len(c.Forward) != 1 || c.ShutdownGrace != "60s" {
		t.Errorf("unexpected config %+v", c)
	}
	if !set["mem"] || set["timeout"] {
		t.Errorf("set keys wrong: %v", set)
	}
}

func TestLoadFileErrors(t *testing.T) {
	cases := map[string]string{
		"mmem: 2G\n":      "mmem",
		"cpus: many\n":    "many",
		"disk: [unclosed": "not valid YAML",
	}
	for body, want := range cases {
		p := writeFile(t, "c.yaml", []byte(body), 0o644)
		c := Defaults()
		if _, err := LoadFile(p, &c); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("LoadFile(%q) error = %v, want it to name %q and the file", body, err, want)
		}
	}
	c := Defaults()
	if _, err := LoadFile("/nonexistent/vm.yaml", &c); err == nil || !strings.Contains(err.Error(), "/nonexistent/vm.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadFileExpandsPaths(t *testing.T) {
	t.Setenv("HOME", "/home/tester")
	t.Setenv("IMAGES", "/srv/images")
	p := writeFile(t, "c.yaml", []byte("disk: [~/vm.qcow2, $IMAGES/b.qcow2]\nkernel: ${IMAGES}/vmlinuz\n"), 0o644)
	c := Defaults()
	if _, err := LoadFile(p, &c); err != nil {
		t.Fatal(err)
	}
	if c.Disk[0] != "/home/tester/vm.qcow2" || c.Disk[1] != "/srv/images/b.qcow2" || c.Kernel != "/srv/images/vmlinuz" {
		t.Fatalf("paths not expanded: %v %s", c.Disk, c.Kernel)
	}
}

// TestShippedConfigs: every example in configs/ loads and validates (its
// disk is the test guest, checked when it has been built).
func TestShippedConfigs(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		c := Defaults()
		if _, err := LoadFile(f, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := os.Stat(c.Disk[0]); err != nil {
			t.Logf("%s: disk not built here (%v); validating the rest", f, err)
			c.Disk = []string{qcow2(t)}
		}
		if _, err := c.Resolve(); err != nil {
			t.Fatalf("%s does not validate: %v", f, err)
		}
	}
}
