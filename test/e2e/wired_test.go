package e2e

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/testutil"
)

// bootAuto boots the test disk with --net auto in l's host namespace and
// checks the guest from the LAN side, then stops it with SIGTERM and checks
// that the host's links are as before.
func bootAuto(t *testing.T, l *lan, wantMode string) {
	t.Helper()
	g := requireQEMUTests(t)
	before := snapshotLinks(t, l.Host)
	runtime := runtimeDir(t)
	out, errOut, code := RunVMRun(t, l.Host, runtime, "net", "plan", "--json", "--name", "e2e-auto")
	var plan struct{ Mode, Parent, UplinkKind string }
	if err := json.Unmarshal([]byte(out), &plan); err != nil || code != 0 {
		t.Fatalf("net plan (exit %d): %v %s %s", code, err, out, errOut)
	}
	if plan.Mode != wantMode {
		t.Fatalf("auto planned %q on %s, want %q", plan.Mode, plan.Parent, wantMode)
	}
	vm := Start(t, l.Host, runtime, "--disk", g.Test, "--snapshot", "--name", "e2e-auto")
	ip := vm.GuestIP(bootTimeout)
	if !strings.HasPrefix(ip, "10.77.0.") {
		t.Fatalf("guest address %s is not from the LAN's DHCP server", ip)
	}
	// What vmrun learnt is what the LAN's DHCP server leased to the guest.
	if lease := leaseOf(t, l.DHCP, lsVM(t, l.Host, runtime, "e2e-auto").MAC); lease != ip {
		t.Errorf("the guest reports %s, the LAN's dnsmasq leased it %s", ip, lease)
	}
	checkLearnt(t, l.Host, vm, "e2e-auto", ip, "dhcp", "10.77.0.1", "DHCP from 10.77.0.1)")
	vm.WaitConsole(`VMRUN-GUEST: ready`, stepTimeout)
	ping(t, l.LAN, ip)
	if body := httpGet(t, l.LAN, ip+":80"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Fatalf("guest TCP port answered %q", body)
	}
	// The host reaches its guest too: on a bridge through its own address
	// on the bridge, on macvtap through vmrun's host link.
	ping(t, l.Host, ip)
	if body := httpGet(t, l.Host, ip+":80"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Fatalf("guest TCP port answered the host %q", body)
	}
	if wantMode == "macvtap" && strings.Contains(vm.Stderr.String(), "not from this host") {
		t.Errorf("vmrun still says the host cannot reach the guest:\n%s", vm.Stderr)
	}
	vm.StopClean(l.Host, before)
}

// TestAutoMacvtapOnVeth: a plain wired uplink (a veth) gets macvtap.
func TestAutoMacvtapOnVeth(t *testing.T) {
	bootAuto(t, newLAN(t, false), "macvtap")
}

// TestAutoBridge: an uplink that is a bridge gets a tap on it.
func TestAutoBridge(t *testing.T) {
	bootAuto(t, newLAN(t, true), "bridge")
}

// TestKilledThenGCAndRestart: SIGKILL vmrun while its macvtap guest runs;
// QEMU dies with it (Pdeathsig), the macvtap and its host link stay; `vmrun ls` reports the
// VM as stale; a new run of the same name cleans up first and works; after
// another SIGKILL, gc and a new run from another network namespace remove
// nothing and say where to run gc, and `vmrun gc` there removes everything.
func TestKilledThenGCAndRestart(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	before := snapshotLinks(t, l.Host)
	runtime := runtimeDir(t)
	args := []string{"--disk", g.Test, "--snapshot", "--net", "macvtap:up0", "--name", "e2e-kill"}

	kill := func() {
		t.Helper()
		vm := Start(t, l.Host, runtime, args...)
		vm.WaitConsole(`VMRUN-GUEST: booted`, bootTimeout)
		vm.Signal(syscall.SIGKILL)
		vm.Wait(exitTimeout)
		if after := snapshotLinks(t, l.Host); len(after) != len(before)+2 {
			t.Fatalf("after SIGKILL want the macvtap and its host link left behind: %v", after)
		}
	}
	kill()
	out, _, _ := RunVMRun(t, l.Host, runtime, "ls", "--json")
	if !strings.Contains(out, `"stale`) {
		t.Fatalf("ls does not report the killed VM as stale:\n%s", out)
	}
	// The restart finds the leftovers, removes them and boots.
	vm := Start(t, l.Host, runtime, args...)
	vm.GuestIP(bootTimeout)
	if !strings.Contains(vm.Stderr.String(), "left behind") {
		t.Errorf("restart did not say it cleaned up:\n%s", vm.Stderr)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("restarted VM exit %d", code)
	}
	if after := snapshotLinks(t, l.Host); !reflect.DeepEqual(after, before) {
		t.Fatalf("links after the restarted run %v, before %v", after, before)
	}

	kill()
	// gc from another network namespace (the test's own) finds the VM's
	// links are not there: it removes nothing, and says where to run.
	out, errOut, code := RunVMRun(t, nil, runtime, "gc")
	if code != exitcode.Setup || !strings.Contains(errOut, "ip netns exec "+l.Host.Name+" vmrun gc") {
		t.Fatalf("gc outside the VM's namespace (exit %d, want %d naming `ip netns exec %s vmrun gc`): %s %s", code, exitcode.Setup, l.Host.Name, out, errOut)
	}
	// Nor can a new run of the same VM from here (--net none: it creates
	// nothing before it reclaims), which says the same.
	_, errOut, code = RunVMRun(t, nil, runtime, "--disk", g.Test, "--snapshot", "--net", "none", "--name", "e2e-kill")
	if code != exitcode.Setup || !strings.Contains(errOut, "ip netns exec "+l.Host.Name+" vmrun gc") || strings.Contains(errOut, "by hand") {
		t.Fatalf("a new run outside the VM's namespace (exit %d, want %d naming `ip netns exec %s vmrun gc` only): %s", code, exitcode.Setup, l.Host.Name, errOut)
	}
	if after := snapshotLinks(t, l.Host); len(after) != len(before)+2 {
		t.Fatalf("gc or a new run outside the VM's namespace changed its links: %v", after)
	}
	out, errOut, code = RunVMRun(t, l.Host, runtime, "gc")
	if code != 0 || !strings.Contains(out, "e2e-kill") {
		t.Fatalf("gc (exit %d): %s %s", code, out, errOut)
	}
	if after := snapshotLinks(t, l.Host); !reflect.DeepEqual(after, before) {
		t.Fatalf("links after gc %v, before %v", after, before)
	}
	assertEmptyDir(t, runtime)
	out, _, _ = RunVMRun(t, l.Host, runtime, "gc")
	if !strings.Contains(out, "nothing to clean up") {
		t.Fatalf("second gc: %s", out)
	}
}

// TestSixteenVMsOnOneUplink starts 16 vmrun processes together on one
// veth uplink: all get distinct macvtap links and MACs, and all clean up.
func TestSixteenVMsOnOneUplink(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	before := snapshotLinks(t, l.Host)
	runtime := runtimeDir(t)
	const n = 16
	vms := make([]*VM, n)
	for i := range vms {
		vms[i] = Start(t, l.Host, runtime, "-v", "--disk", g.Test, "--snapshot", "--net", "macvtap:up0",
			"--mem", "128M", "--console", "none", "--name", fmt.Sprintf("e2e-many-%02d", i))
	}
	for _, vm := range vms {
		if _, err := vm.Stderr.WaitFor(`QMP ready`, 3*time.Minute); err != nil {
			t.Fatalf("%v\n%s", err, vm.Stderr)
		}
	}
	out := l.Host.MustRun(t, "ip", "-o", "link", "show", "type", "macvtap")
	macs := map[string]bool{}
	links := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		links++
		if f := strings.Fields(line); len(f) > 0 {
			for i, w := range f {
				if w == "link/ether" && i+1 < len(f) {
					macs[f[i+1]] = true
				}
			}
		}
	}
	if links != n || len(macs) != n {
		t.Fatalf("%d macvtap links with %d distinct MACs, want %d of each:\n%s", links, len(macs), n, out)
	}
	lsOut, _, _ := RunVMRun(t, l.Host, runtime, "ls", "--json")
	if c := strings.Count(lsOut, `"status": "running"`); c != n {
		t.Fatalf("ls shows %d running VMs, want %d:\n%s", c, n, lsOut)
	}
	for _, vm := range vms {
		vm.Signal(syscall.SIGQUIT)
	}
	for i, vm := range vms {
		if code := vm.Wait(2 * time.Minute); code != 0 {
			t.Fatalf("VM %d exit %d:\n%s", i, code, vm.Stderr)
		}
	}
	assertClean(t, l.Host, before, runtime)
}

// TestAutoNATOnTunnel: a default route through a layer-3 tunnel (a tun
// device, as a VPN client makes) leaves no layer-2 mode; run as root,
// auto plans NAT there and says why.
func TestAutoNATOnTunnel(t *testing.T) {
	testutil.RequireRoot(t)
	host := testutil.NewNetns(t, "t")
	host.MustRun(t, "ip", "tuntap", "add", "vpn0", "mode", "tun")
	host.MustRun(t, "ip", "addr", "add", "10.79.0.2/24", "dev", "vpn0")
	host.MustRun(t, "ip", "link", "set", "vpn0", "up")
	host.MustRun(t, "ip", "route", "add", "default", "dev", "vpn0")
	out, errOut, code := RunVMRun(t, host, runtimeDir(t), "net", "plan", "--json", "--name", "e2e-vpn")
	var plan struct {
		Mode, Parent, Uplink, Reason, Notice string
		UplinkKind                           string `json:"uplink_kind"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || code != 0 {
		t.Fatalf("net plan (exit %d): %v %s %s", code, err, out, errOut)
	}
	if plan.Mode != "nat" || plan.Uplink != "vpn0" || plan.UplinkKind != "other" {
		t.Fatalf("auto on a tun uplink planned %+v, want nat on uplink vpn0 (other)", plan)
	}
	if !strings.Contains(plan.Notice, "vpn0 is not an Ethernet device") {
		t.Fatalf("notice %q does not say why", plan.Notice)
	}
}

// TestAutoSetupFailureLeavesNothing: --net auto starts QEMU before the
// network set-up (the NIC is plugged in over QMP); a set-up that fails
// then — a foreign link holds the macvtap's name — ends the run as it
// does for the explicit mode, whose set-up runs before QEMU: the same exit
// code and sentence, QEMU killed, nothing left (links, processes, the
// runtime directory).
func TestAutoSetupFailureLeavesNothing(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	runtime := runtimeDir(t)
	out, errOut, code := RunVMRun(t, l.Host, runtime, "--disk", g.Test, "--net", "auto", "--name", "e2e-autofail", "--dry-run", "--json")
	var dry struct {
		Plan struct {
			Mode     string
			LinkName string `json:"link_name"`
		}
	}
	if err := json.Unmarshal([]byte(out), &dry); err != nil || code != 0 || dry.Plan.Mode != "macvtap" || dry.Plan.LinkName == "" {
		t.Fatalf("dry run (exit %d, %v): want a macvtap plan with its link's name\n%s%s", code, err, out, errOut)
	}
	l.Host.MustRun(t, "ip", "link", "add", dry.Plan.LinkName, "type", "bridge")
	before := snapshotLinks(t, l.Host)
	var sentence [2]string
	for i, mode := range []string{"auto", "macvtap:up0"} {
		_, errOut, code := RunVMRun(t, l.Host, runtime, "-v", "--disk", g.Test, "--snapshot", "--net", mode, "--name", "e2e-autofail")
		if code != 2 || !strings.Contains(errOut, "already exists and is not vmrun's") {
			t.Fatalf("--net %s with a foreign link named %s: exit %d, want 2 and the link named\n%s", mode, dry.Plan.LinkName, code, errOut)
		}
		started := strings.Contains(errOut, "QEMU started")
		if started != (mode == "auto") {
			t.Fatalf("--net %s: QEMU started before the set-up failed: %v, want %v\n%s", mode, started, mode == "auto", errOut)
		}
		for _, line := range strings.Split(errOut, "\n") {
			if strings.Contains(line, "already exists") {
				sentence[i] = line
			}
		}
		if after := snapshotLinks(t, l.Host); !reflect.DeepEqual(after, before) {
			t.Fatalf("--net %s: links after the failure %v, before %v", mode, after, before)
		}
		if left := waitNoProcesses(l.Host, exitTimeout); len(left) != 0 {
			t.Fatalf("--net %s: processes left in the host namespace after the failure: %v", mode, left)
		}
		assertEmptyDir(t, runtime)
	}
	if sentence[0] != sentence[1] {
		t.Errorf("--net auto says\n%s\n--net macvtap says\n%s", sentence[0], sentence[1])
	}
}
