package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/internal/hostcheck"
	"github.com/vmrun/vmrun/internal/kvmcheck"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/launcher"
)

// TestDoctorJSON: the report is stable (every check, in order, with a
// known status), the device checks match the devices, the link probes
// match what the kernel lets iproute2 create, and the exit code matches
// "ok". This machine's kernel lacks ipvtap and vhost-net; test/wifi runs
// doctor in the nested rig, without and with them loaded, and checks that
// it reports them missing and then found.
func TestDoctorJSON(t *testing.T) {
	t.Setenv(rundir.EnvRoot, t.TempDir())
	out, errOut, code := vmrun(t, "doctor", "--json")
	var r hostcheck.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json (exit %d): %v\n%s%s", code, err, out, errOut)
	}
	var ids []string
	for _, c := range r.Checks {
		ids = append(ids, c.ID)
		switch c.Status {
		case hostcheck.StatusOK, hostcheck.StatusWarn, hostcheck.StatusFail, hostcheck.StatusUnknown:
		default:
			t.Errorf("check %s: status %q", c.ID, c.Status)
		}
		if c.Summary == "" || c.Status != hostcheck.StatusOK && c.Status != hostcheck.StatusUnknown && c.Fix == "" {
			t.Errorf("check %+v lacks a summary or a fix", c)
		}
	}
	if !reflect.DeepEqual(ids, hostcheck.IDs) {
		t.Errorf("check IDs %q, want %q", ids, hostcheck.IDs)
	}
	// The JSON keys themselves are part of the contract.
	var raw map[string]any
	_ = json.Unmarshal([]byte(out), &raw)
	for _, k := range []string{"ok", "auto", "checks"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %q key", k)
		}
	}
	status := map[string]string{}
	for _, c := range r.Checks {
		status[c.ID] = c.Status
	}
	for id, dev := range map[string]string{"kvm": "/dev/kvm", "vhost-net": "/dev/vhost-net"} {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		usable := err == nil
		broken := ""
		if id == "kvm" && usable {
			// KVM must work (QEMU's own answer, probed afresh) and QEMU's
			// user must be able to open it.
			broken = kvmWorks(t)
			usable = broken == "" && confine.KVMDenied(config.Spec{}) == ""
		}
		if usable != (status[id] == hostcheck.StatusOK) {
			t.Errorf("%s: status %s, but opening %s: %v (QEMU's user: %q, KVM: %q)", id, status[id], dev, err, confine.KVMDenied(config.Spec{}), broken)
		}
	}
	if os.Geteuid() == 0 {
		var missing []string
		for id, can := range kernelCan(t) {
			want := hostcheck.StatusOK
			if !can {
				want, missing = hostcheck.StatusFail, append(missing, id)
			}
			if status[id] != want {
				t.Errorf("%s: status %s, but iproute2 can create one: %v", id, status[id], can)
			}
		}
		t.Logf("links this kernel cannot create: %q", missing)
	} else {
		for _, id := range []string{"tun", "bridge", "macvtap", "ipvtap", "nftables"} {
			if status[id] != hostcheck.StatusUnknown {
				t.Errorf("%s: status %s without root, want %s", id, status[id], hostcheck.StatusUnknown)
			}
		}
	}
	if status["nftables"] == hostcheck.StatusUnknown && os.Geteuid() == 0 {
		t.Errorf("nftables: status unknown as root")
	}
	if (code == 0) != r.OK || code != 0 && code != 1 {
		t.Errorf("exit %d with ok=%v", code, r.OK)
	}
	if !r.OK && errOut != "" {
		t.Errorf("exit 1 prints nothing more: %q", errOut)
	}
	// The text form: one line per problem, then the verdict.
	text, _, tcode := vmrun(t, "doctor")
	if tcode != code || !strings.Contains(text, "--net auto uses "+r.Auto.Mode) {
		t.Errorf("text form (exit %d):\n%s", tcode, text)
	}
}

// kernelCan asks the kernel, through iproute2 in a throwaway namespace (not
// through netsetup's probe, which doctor uses), which of doctor's link
// kinds it can create.
func kernelCan(t *testing.T) map[string]bool {
	t.Helper()
	ns := testutil.NewNetns(t, "doc")
	ns.MustRun(t, "ip", "link", "add", "dv0", "type", "veth", "peer", "name", "dv1")
	try := func(args ...string) bool {
		out, err := ns.Run("ip", args...)
		t.Logf("ip %s: %v %s", strings.Join(args, " "), err, strings.TrimSpace(out))
		return err == nil
	}
	return map[string]bool{
		"tun":     try("tuntap", "add", "dev", "dt0", "mode", "tap"),
		"bridge":  try("link", "add", "db0", "type", "bridge"),
		"macvtap": try("link", "add", "dm0", "link", "dv0", "type", "macvtap", "mode", "bridge"),
		"ipvtap":  try("link", "add", "di0", "link", "dv1", "type", "ipvtap", "mode", "l2", "bridge"),
	}
}

// kvmWorks probes KVM as vmrun doctor does, without its cache: "" when it
// works or there is no QEMU to ask (doctor's qemu check fails then).
func kvmWorks(t *testing.T) string {
	qemu, err := exec.LookPath(config.Defaults().QEMU)
	if err != nil {
		return ""
	}
	why, final := launcher.ProbeKVM(qemu, kvmcheck.Timeout)
	if !final {
		t.Fatalf("probing KVM with %s: %s", qemu, why)
	}
	return why
}
