package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/rundir"
)

// drives returns the file= of every -drive in argv (for a disk passed as
// an fdset, as root does, the path its -add-fd is labelled with).
func drives(argv []string) []string {
	labels := map[string]string{}
	for i, a := range argv {
		if a == "-add-fd" && i+1 < len(argv) {
			var set, label string
			for _, kv := range strings.Split(argv[i+1], ",") {
				if v, ok := strings.CutPrefix(kv, "set="); ok {
					set = v
				}
				if v, ok := strings.CutPrefix(kv, "opaque="); ok {
					label = v
				}
			}
			labels["/dev/fdset/"+set] = label
		}
	}
	var out []string
	for i, a := range argv {
		if a == "-drive" && i+1 < len(argv) {
			for _, kv := range strings.Split(argv[i+1], ",") {
				if f, ok := strings.CutPrefix(kv, "file="); ok {
					if l, ok := labels[f]; ok {
						f = l
					}
					out = append(out, filepath.Base(f))
				}
			}
		}
	}
	return out
}

// TestEnvLists: list-valued options are lists in the environment too:
// VMRUN_DISK and VMRUN_FORWARD split at commas, VMRUN_QEMU_ARG into words
// as a shell would; the command line still wins.
func TestEnvLists(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	dir := t.TempDir()
	head := make([]byte, 1024)
	copy(head, "QFI\xfb\x00\x00\x00\x03")
	for _, n := range []string{"a.qcow2", "b.qcow2", "c.qcow2"} {
		if err := os.WriteFile(filepath.Join(dir, n), head, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, b, c := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2"), filepath.Join(dir, "c.qcow2")
	base := []string{"--net", "user", "--qemu", "/bin/true", "--console", "none", "--name", "envlist"}

	t.Setenv("VMRUN_DISK", a+", "+b)
	argv := dryArgv(t, base...)
	if got := drives(argv); !reflect.DeepEqual(got, []string{"a.qcow2", "b.qcow2"}) {
		t.Errorf("VMRUN_DISK=%s,%s: drives %q", a, b, got)
	}
	if got := drives(dryArgv(t, append(base, "--disk", c)...)); !reflect.DeepEqual(got, []string{"c.qcow2"}) {
		t.Errorf("--disk does not win over VMRUN_DISK: drives %q", got)
	}

	t.Setenv("VMRUN_FORWARD", "tcp:18080:80,tcp:12222:22")
	t.Setenv("VMRUN_QEMU_ARG", `-fw_cfg 'name=opt/vmrun/x,string=a b' -device "virtio-rng-pci"`)
	out, errOut, code := vmrun(t, append(base, "--dry-run", "--json")...)
	var dr struct {
		Plan struct {
			Forwards []struct {
				HostPort int `json:"host_port"`
			} `json:"forwards"`
		} `json:"plan"`
		Argv []string `json:"argv"`
	}
	if err := json.Unmarshal([]byte(out), &dr); code != 0 || err != nil {
		t.Fatalf("dry-run exit %d (%v): %s%s", code, err, out, errOut)
	}
	if f := dr.Plan.Forwards; len(f) != 2 || f[0].HostPort != 18080 || f[1].HostPort != 12222 {
		t.Errorf("VMRUN_FORWARD=tcp:18080:80,tcp:12222:22: forwards %+v", f)
	}
	argv = dr.Argv
	want := []string{"-fw_cfg", "name=opt/vmrun/x,string=a b", "-device", "virtio-rng-pci"}
	if len(argv) < len(want) || !reflect.DeepEqual(argv[len(argv)-len(want):], want) {
		t.Errorf("VMRUN_QEMU_ARG: argv ends %q, want %q", argv[max(0, len(argv)-len(want)):], want)
	}

	t.Setenv("VMRUN_QEMU_ARG", `-fw_cfg 'unterminated`)
	_, errOut, code = vmrun(t, append(base, "--dry-run")...)
	if code != exitcode.Usage || !strings.Contains(errOut, "VMRUN_QEMU_ARG") {
		t.Errorf("bad VMRUN_QEMU_ARG: exit %d, %s", code, errOut)
	}
}

// TestEnvListsDocumented: --help names each list variable's separator.
func TestEnvListsDocumented(t *testing.T) {
	out, _, _ := vmrun(t, "--help")
	for _, want := range []string{"VMRUN_DISK=a.qcow2,b.qcow2", "[$VMRUN_DISK, comma-separated]", "[$VMRUN_FORWARD, comma-separated]", "[$VMRUN_QEMU_ARG, words as a shell splits them]"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
