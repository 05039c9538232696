package e2e

import (
	"encoding/json"
	"os"
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
