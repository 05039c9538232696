package e2e

import (
	"net"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
)

// cloudLAN makes l's LAN side drop every frame whose source MAC is not
// the host uplink's, as a cloud network (or a switch with port security)
// does with MACs it did not assign: an nftables ingress filter on the
// LAN's veth.
func cloudLAN(t testing.TB, l *lan) {
	t.Helper()
	ifi, err := hostIfaceMAC(t, l)
	if err != nil {
		t.Fatal(err)
	}
	testutil.DropForeignMACs(t, l.LAN, "lan0", ifi)
}

// hostIfaceMAC is the MAC of the host's uplink veth.
func hostIfaceMAC(t testing.TB, l *lan) (net.HardwareAddr, error) {
	out := l.Host.MustRun(t, "cat", "/sys/class/net/"+l.Uplink+"/address")
	return net.ParseMAC(strings.TrimSpace(out))
}

// TestAutoLeavesL2WhenLANRefusesGuest: --net auto picks macvtap on a
// wired uplink whose LAN drops the guest's frames; vmrun's DHCP probe from
// the guest's MAC gets no answer (or, when the guest's own DHCP started
// first, the guest's does), so vmrun moves the running guest to routed —
// same QEMU, no reboot — where it gets an address from vmrun's DHCP
// (leased upstream with the host's MAC) and reaches the LAN's gateway.
func TestAutoLeavesL2WhenLANRefusesGuest(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	cloudLAN(t, l)
	before := snapshotLinks(t, l.Host)
	runtime := runtimeDir(t)
	vm := Start(t, l.Host, runtime, "-v", "--disk", g.Test, "--snapshot", "--name", "e2e-refused")
	vm.WaitConsole(`VMRUN-GUEST: booted`, bootTimeout)
	first := lsVM(t, l.Host, runtime, "e2e-refused")
	m, err := vm.Stderr.WaitFor(`vmrun: network: macvtap → (\S+) \((no DHCP answer[^)]*)\); switched in (\d+) ms`, stepTimeout)
	if err != nil {
		t.Fatalf("no switch: %v\n%s", err, vm.lastLines())
	}
	t.Logf("switched to %s (%s) in %s ms", m[1], m[2], m[3])
	movedByProbe(t, vm, m[2])
	ipm := vm.WaitConsole(`VMRUN-GUEST-IP=(\d+\.\d+\.\d+\.\d+)/\d+ GW=(\S+)`, stepTimeout)
	ip := ipm[1]
	if !strings.HasPrefix(ip, "10.77.0.") {
		t.Fatalf("guest address %s after the switch is not on the LAN's subnet", ip)
	}
	after := lsVM(t, l.Host, runtime, "e2e-refused")
	if first.QEMUPID == 0 || after.QEMUPID != first.QEMUPID || after.Switches != 1 || after.Net != m[1] {
		t.Fatalf("after the switch: QEMU pid %d (was %d), %d switches, net %q; want the same QEMU, 1 switch, %s",
			after.QEMUPID, first.QEMUPID, after.Switches, after.Net, m[1])
	}
	if n := len(regexp.MustCompile(`VMRUN-GUEST: booted`).FindAllString(vm.Console.String(), -1)); n != 1 {
		t.Fatalf("the guest booted %d times, want once (no restart)", n)
	}
	// From the LAN (through the host's MAC) to the guest, and back.
	ping(t, l.LAN, ip)
	if body := httpGet(t, l.LAN, ip+":80"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Fatalf("guest TCP port answered the LAN %q", body)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, vm.Stderr)
	}
	if left := snapshotLinks(t, l.Host); !reflect.DeepEqual(left, before) {
		t.Fatalf("links after exit %v, before %v", left, before)
	}
	assertEmptyDir(t, runtime)
	secondBootRemembers(t, l, g.Test, m[1])
}

// movedByProbe checks who moved the guest off macvtap (why is the switch
// line's reason): vmrun's DHCP probe, whose bound (6 DISCOVERs, 6 s) passes
// before the test guest's first DISCOVER under TCG (which then moves it);
// or, when the guest's own DHCP started first (a guest that boots fast,
// under KVM), the probe's step line says it ended, and the guest's
// verdict moved it. Either way the guest sees its NIC replaced.
func movedByProbe(t *testing.T, vm *VM, why string) {
	t.Helper()
	vm.WaitConsole(`VMRUN-GUEST: new NIC eth0`, stepTimeout)
	probe := regexp.MustCompile(`^no DHCP answer to vmrun's probe from the guest's MAC in \d+ s, 6 DISCOVERs; the LAN answers the host but not the guest`)
	if strings.Contains(vm.Stderr.String(), "DHCP probe ended after") {
		t.Logf("the guest's own DHCP started before the probe's bound passed: the verdict moved it")
		if !strings.Contains(why, "no DHCP answer for the guest in ") {
			t.Fatalf("the probe ended, but the switch's reason is %q", why)
		}
		return
	}
	if !probe.MatchString(why) {
		t.Fatalf("switch reason %q, want the probe's (%s)\n%s", why, probe, vm.Stderr)
	}
	if _, err := vm.Stderr.WaitFor(`network: probing the LAN's DHCP from the guest's MAC on \S+ \(up to 6 DISCOVERs, 6s\)`, stepTimeout); err != nil {
		t.Fatal(err)
	}
}

// secondBootRemembers: on the same network, `vmrun net plan` says what was
// remembered and the next boot starts in mode at once (no switch); `vmrun
// net forget` makes auto choose macvtap again.
func secondBootRemembers(t *testing.T, l *lan, disk, mode string) {
	t.Helper()
	runtime := runtimeDir(t)
	out, errOut, code := RunVMRun(t, l.Host, runtime, "net", "plan", "--name", "e2e-refused")
	if code != 0 || !strings.Contains(out, "remembered: "+mode+" (macvtap got no DHCP answer on ") {
		t.Fatalf("net plan (exit %d) does not say what was remembered:\n%s%s", code, out, errOut)
	}
	vm := Start(t, l.Host, runtime, "--disk", disk, "--snapshot", "--name", "e2e-refused")
	ip := vm.GuestIP(bootTimeout)
	if !strings.HasPrefix(ip, "10.77.0.") {
		t.Fatalf("second boot: guest address %s is not on the LAN's subnet", ip)
	}
	if e := lsVM(t, l.Host, runtime, "e2e-refused"); e.Net != mode || e.Switches != 0 {
		t.Fatalf("second boot on %q after %d switches, want %s from the start", e.Net, e.Switches, mode)
	}
	ping(t, l.LAN, ip)
	if strings.Contains(vm.Stderr.String(), "switched in") {
		t.Fatalf("the second boot switched again:\n%s", vm.Stderr)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("second boot: exit code %d after SIGTERM\n%s", code, vm.Stderr)
	}
	out, errOut, code = RunVMRun(t, l.Host, runtime, "net", "forget")
	if code != 0 || !strings.HasPrefix(out, "forgot gateway ") {
		t.Fatalf("net forget (exit %d): %s%s", code, out, errOut)
	}
	out, _, _ = RunVMRun(t, l.Host, runtime, "net", "plan", "--name", "e2e-refused")
	if !strings.Contains(out, "mode:    macvtap") || strings.Contains(out, "remembered") {
		t.Fatalf("net plan after forget:\n%s", out)
	}
}

// TestSwitchKilledThenGC: vmrun is SIGKILLed at moments spread over a
// switch (macvtap → routed on a LAN that refuses the guest: the new
// attachment being made, the NIC being swapped, the old one being
// removed); `vmrun gc` must then leave the host namespace as it was —
// links, addresses, routes, neighbour entries, sysctls, processes and the
// runtime directory (the soak's snapshot).
func TestSwitchKilledThenGC(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	cloudLAN(t, l)
	waitNoTentative(t, l) // the link-local addresses and their routes settled
	runtime := runtimeDir(t)
	before := takeSnapshot(t, l.Host, runtime)
	// The switch takes 150-300 ms here (routed's set-up with its upstream
	// lease, then the NIC swap): kills at its start, inside, and after.
	for _, delay := range []time.Duration{0, 40 * time.Millisecond, 120 * time.Millisecond, 400 * time.Millisecond} {
		vm := Start(t, l.Host, runtime, "--disk", g.Test, "--snapshot", "--name", "e2e-kill-switch", "-v")
		if _, err := vm.Stderr.WaitFor(`network: switching macvtap → routed`, bootTimeout); err != nil {
			t.Fatalf("no switch: %v\n%s", err, vm.lastLines())
		}
		time.Sleep(delay) // the moment of the kill within the switch, not synchronisation
		vm.Signal(syscall.SIGKILL)
		vm.Wait(exitTimeout)
		if left := waitNoProcesses(l.Host, time.Minute); len(left) > 0 {
			t.Fatalf("kill %s into the switch: processes left:\n  %s", delay, strings.Join(left, "\n  "))
		}
		if out, errOut, code := RunVMRun(t, l.Host, runtime, "gc"); code != 0 {
			t.Fatalf("kill %s into the switch: gc exit %d\n%s%s", delay, code, out, errOut)
		}
		if d := before.diff(takeSnapshot(t, l.Host, runtime)); d != "" {
			t.Fatalf("kill %s into the switch, then gc: the host namespace differs from before:\n%s\n--- vmrun's stderr:\n%s", delay, d, vm.Stderr)
		}
		_, _, _ = RunVMRun(t, l.Host, runtime, "net", "forget", "--all")
	}
}
