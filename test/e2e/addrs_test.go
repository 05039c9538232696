package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
)

// leaseFile returns the path of the lease file of a dnsmasq started by
// testutil.StartDnsmasq.
func leaseFile(t *testing.T, dnsmasq *testutil.Process) string {
	t.Helper()
	for _, a := range dnsmasq.Cmd.Args {
		if f, ok := strings.CutPrefix(a, "--dhcp-leasefile="); ok {
			return f
		}
	}
	t.Fatalf("dnsmasq %v has no lease file", dnsmasq.Cmd.Args)
	return ""
}

// leaseOf returns the address the LAN's dnsmasq leased to MAC mac, read
// from its lease file (lines: expiry MAC address hostname client-id).
func leaseOf(t *testing.T, dnsmasq *testutil.Process, mac string) string {
	t.Helper()
	b, err := os.ReadFile(leaseFile(t, dnsmasq))
	if err != nil {
		t.Fatalf("dnsmasq's lease file: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && strings.EqualFold(f[1], mac) {
			return f[2]
		}
	}
	t.Fatalf("dnsmasq leased nothing to %s:\n%s", mac, b)
	return ""
}

// leased reports whether the LAN's dnsmasq holds a lease of addr.
func leased(t *testing.T, dnsmasq *testutil.Process, addr string) bool {
	t.Helper()
	b, err := os.ReadFile(leaseFile(t, dnsmasq))
	if err != nil {
		t.Fatalf("dnsmasq's lease file: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == addr {
			return true
		}
	}
	return false
}

// lsEntry is what the tests read of one VM in `vmrun ls --json`.
type lsEntry struct {
	Name      string
	MAC       string
	Net       string
	Addresses []struct{ Addr, Source, Server string }
	QEMUPID   int `json:"qemu_pid"`
	Switches  int `json:"switches"`
	Uplink    string
}

// lsVM returns VM name's entry in `vmrun ls --json`.
func lsVM(t *testing.T, ns *testutil.Netns, runtime, name string) lsEntry {
	t.Helper()
	out, errOut, code := RunVMRun(t, ns, runtime, "ls", "--json")
	var vms []lsEntry
	if err := json.Unmarshal([]byte(out), &vms); err != nil || code != 0 {
		t.Fatalf("ls --json (exit %d): %v\n%s%s", code, err, out, errOut)
	}
	for _, v := range vms {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("ls --json does not list %q:\n%s", name, out)
	return lsEntry{}
}

// checkLearnt checks what vmrun learnt of the guest of VM name: `vmrun
// wait --for address` prints want, `vmrun ls --json` lists it with
// source (and DHCP server, when server is not ""), and vmrun announced it
// on stderr with evidence.
func checkLearnt(t *testing.T, ns *testutil.Netns, vm *VM, name, want, source, server, evidence string) {
	t.Helper()
	out, errOut, code := RunVMRun(t, ns, vm.Runtime, "wait", name, "--for", "address", "--timeout", stepTimeout.String())
	if got := strings.TrimSpace(out); code != 0 || got != want {
		t.Errorf("vmrun wait %s --for address: exit %d, printed %q; want %s\n%s", name, code, got, want, errOut)
	}
	found := false
	for _, a := range lsVM(t, ns, vm.Runtime, name).Addresses {
		if a.Addr == want {
			found = true
			if a.Source != source || a.Server != server {
				t.Errorf("ls --json: %s from %q (server %q), want %q (server %q)", want, a.Source, a.Server, source, server)
			}
		}
	}
	if !found {
		t.Errorf("ls --json does not list the guest's address %s", want)
	}
	if line := "vmrun: guest address " + want + " (" + evidence; !strings.Contains(vm.Stderr.String(), line) {
		t.Errorf("stderr does not say %q:\n%s", line, vm.Stderr)
	}
}

// guestAddrs is the guest's own list of its global addresses: `ip -o
// addr` run in it through its agent (vmrun exec).
func guestAddrs(t *testing.T, runtime, name string) []string {
	t.Helper()
	out, errOut, code := runExec(t, runtime, nil, name, "--", "ip", "-o", "addr")
	if code != 0 {
		t.Fatalf("vmrun exec %s -- ip -o addr: exit %d\n%s", name, code, errOut)
	}
	var addrs []string
	for _, m := range regexp.MustCompile(`(?m)\binet6? ([0-9a-f.:]+)/\d+ .*?scope (\w+)`).FindAllStringSubmatch(out, -1) {
		if m[2] == "global" {
			addrs = append(addrs, m[1])
		}
	}
	sort.Strings(addrs)
	return addrs
}

// lsAddrs waits until `vmrun ls --json` lists exactly want for VM name
// (in any order) and returns its entries; it fails the test after
// stepTimeout.
func lsAddrs(t *testing.T, ns *testutil.Netns, runtime, name string, want []string) map[string]string {
	t.Helper()
	var got map[string]string
	var list []string
	// vmrun's state file has no change notice: waitFor polls it.
	waitFor(t, stepTimeout, func() bool {
		got, list = map[string]string{}, nil
		for _, a := range lsVM(t, ns, runtime, name).Addresses {
			got[a.Addr] = a.Source
			list = append(list, a.Addr)
		}
		sort.Strings(list)
		return slices.Equal(list, want)
	}, func() string {
		return fmt.Sprintf("ls --json lists %v after %s, the guest has %v", list, stepTimeout, want)
	})
	return got
}

// checkAgentAddrs: the addresses vmrun shows are the guest's own (what
// `ip -o addr` says in it), and the guest agent's word reaches `vmrun ls
// --json` (source "agent") for addresses the guest's traffic does not
// show: ones a command adds (with no traffic on the LAN), and their
// removal, each after the `vmrun exec` that made the change.
func checkAgentAddrs(t *testing.T, ns *testutil.Netns, runtime, name string) {
	t.Helper()
	lsAddrs(t, ns, runtime, name, guestAddrs(t, runtime, name))
	const v4, v6 = "192.0.2.77", "2001:db8:77::77"
	if _, errOut, code := runExec(t, runtime, nil, name, "--", "sh", "-c",
		"ip addr add "+v4+"/24 dev eth0 && ip -6 addr add "+v6+"/64 dev eth0"); code != 0 {
		t.Fatalf("adding addresses in the guest: exit %d\n%s", code, errOut)
	}
	have := guestAddrs(t, runtime, name)
	if !slices.Contains(have, v4) || !slices.Contains(have, v6) {
		t.Fatalf("the guest lists %v after adding %s and %s", have, v4, v6)
	}
	sources := lsAddrs(t, ns, runtime, name, have)
	if sources[v4] != "agent" {
		t.Errorf("ls --json: %s from %q, want \"agent\"", v4, sources[v4])
	}
	if _, errOut, code := runExec(t, runtime, nil, name, "--", "sh", "-c",
		"ip addr del "+v4+"/24 dev eth0 && ip -6 addr del "+v6+"/64 dev eth0"); code != 0 {
		t.Fatalf("removing the addresses in the guest: exit %d\n%s", code, errOut)
	}
	lsAddrs(t, ns, runtime, name, guestAddrs(t, runtime, name))
}

// TestWaitAddressExpires: a guest with no address when --wait-address
// passes (here, with no network at all) is powered off, vmrun exits with
// 124 and says why, and nothing is left. sshRoundTrip covers the other
// way: the address comes in time and the VM runs on.
func TestWaitAddressExpires(t *testing.T) {
	g := requireQEMUTests(t)
	vm := Start(t, nil, "", "--disk", g.Test, "--snapshot", "--net", "none", "--wait-address", "2s",
		"--shutdown-grace", "3s", "--name", "e2e-waitaddr")
	if code := vm.Wait(exitTimeout); code != 124 {
		t.Fatalf("exit code %d, want 124\n%s", code, vm.Stderr)
	}
	if !strings.Contains(vm.Stderr.String(), "no guest address within --wait-address 2s") {
		t.Errorf("stderr does not say why:\n%s", vm.Stderr)
	}
	assertEmptyDir(t, vm.Runtime)
}
