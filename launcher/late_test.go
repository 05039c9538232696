package launcher

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/testutil"
)

// TestBuildLateNIC: a VM with LateNIC has the command line of the same VM
// with a Hotplug NIC, without the NIC's -netdev and -device and its fds:
// the root ports stand where they would, so every PCI device keeps its
// place.
func TestBuildLateNIC(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	vm := VM{Name: "late", QEMU: "qemu", MemMiB: 256, CPUs: 1, Kernel: "/k", Console: ConsoleNone,
		Disks:  []Disk{{Path: "/d.qcow2", Format: "qcow2"}},
		Shares: []Share{{Path: "/srv", Tag: "srv"}}, Agent: &AgentPorts{}}
	withNIC := vm
	withNIC.NIC = &NIC{Backend: "tap", Files: []*os.File{nil}, MAC: mac, Hotplug: true}
	full, err := Build(withNIC)
	if err != nil {
		t.Fatal(err)
	}
	vm.LateNIC = true
	late, err := Build(vm)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(dropArgs(full.Args, "tap,id=net0", "virtio-net-pci"), " ")
	// The NIC's fd was 3: the later fds move down by one.
	if got := strings.Join(late.Args, " "); got != renumber(want) {
		t.Fatalf("LateNIC command line\n%s\nwant\n%s", got, renumber(want))
	}
	if len(late.ExtraFiles) != len(full.ExtraFiles)-1 {
		t.Fatalf("LateNIC passes %d files, want %d (the NIC's are passed over QMP)", len(late.ExtraFiles), len(full.ExtraFiles)-1)
	}
	vm.LateNIC = false
	if none, _ := Build(vm); slices.ContainsFunc(none.Args, func(a string) bool { return strings.Contains(a, "pcie-root-port") }) {
		t.Fatalf("a VM with no NIC and no LateNIC has root ports: %q", none.Args)
	}
}

// dropArgs returns args without the options whose value contains one of
// subs.
func dropArgs(args []string, subs ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if i+1 < len(args) && slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(args[i+1], s) }) {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// renumber lowers every fd=N (N ≥ 4) of a command line by one.
func renumber(s string) string {
	return regexp.MustCompile(`\bfd=(\d+)\b`).ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(m, "fd="))
		if n < 4 {
			return m
		}
		return "fd=" + strconv.Itoa(n-1)
	})
}

// lateVM returns a VM with no boot device (SeaBIOS spins), a disk before
// the NIC's place, a 9p share after it and a second QMP monitor for the
// test (on sock+".test"), for a real QEMU, and the QMP socket's path.
func lateVM(t *testing.T) (VM, string) {
	t.Helper()
	qemu := testutil.RequireQEMU(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "qmp.sock")
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return VM{Name: "late", QEMU: qemu, MemMiB: 64, CPUs: 1, Console: ConsoleNone, QMP: qmpFile(t, sock),
		Disks: []Disk{{Path: disk, Format: "raw"}}, Shares: []Share{{Path: dir, Tag: "d"}},
		ExtraArgs: []string{"-qmp", "unix:" + sock + ".test,server=on,wait=off"}}, sock
}

// queryPCI lists the PCI devices of the QEMU whose test monitor is on
// path (lateVM), those behind bridges included, one line each:
// "bus:slot.function vendor:device class qdev-id".
func queryPCI(t *testing.T, path string) []string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(runBound))
	dec := json.NewDecoder(c)
	var reply struct {
		QMP    json.RawMessage
		Event  string
		Return json.RawMessage
		Error  *struct{ Desc string }
	}
	next := func() {
		for {
			reply.Event, reply.Return, reply.Error, reply.QMP = "", nil, nil, nil
			if err := dec.Decode(&reply); err != nil {
				t.Fatalf("test monitor: %v", err)
			}
			if reply.Error != nil {
				t.Fatalf("test monitor: %s", reply.Error.Desc)
			}
			if reply.Event == "" {
				return
			}
		}
	}
	next() // the greeting
	for _, cmd := range []string{"qmp_capabilities", "query-pci"} {
		fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd)
		next()
	}
	type dev struct {
		Slot, Function int
		ID             struct{ Vendor, Device int }
		ClassInfo      struct{ Class int } `json:"class_info"`
		QdevID         string              `json:"qdev_id"`
		PCIBridge      *struct {
			Bus     struct{ Secondary int }
			Devices []json.RawMessage
		} `json:"pci_bridge"`
	}
	var buses []struct {
		Bus     int
		Devices []json.RawMessage
	}
	if err := json.Unmarshal(reply.Return, &buses); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(bus int, devs []json.RawMessage)
	walk = func(bus int, devs []json.RawMessage) {
		for _, raw := range devs {
			var d dev
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%02x:%02x.%d %04x:%04x %04x %s", bus, d.Slot, d.Function, d.ID.Vendor, d.ID.Device, d.ClassInfo.Class, d.QdevID))
			if d.PCIBridge != nil {
				walk(d.PCIBridge.Bus.Secondary, d.PCIBridge.Devices)
			}
		}
	}
	for _, b := range buses {
		walk(b.Bus, b.Devices)
	}
	return out
}

// startPaused starts vm and returns its Process, its stop channel, its
// notes and a channel closed once the guest runs; Supervise not yet
// called.
func startPaused(t *testing.T, vm VM, sock string) (p *Process, stop chan os.Signal, n *notes, running chan struct{}) {
	t.Helper()
	cl, err := Build(vm)
	if err != nil {
		t.Fatal(err)
	}
	n, running, stop = &notes{}, make(chan struct{}), make(chan os.Signal, 1)
	opts := Options{QMPPath: sock, Grace: 300 * time.Millisecond, Notify: n.add, Stderr: n, Stop: stop,
		Running: func() { close(running) }, Plugged: func(d time.Duration) { n.add("plugged in %s", d) }}
	if p, err = Start(cl, opts); err != nil {
		t.Fatal(err)
	}
	return p, stop, n, running
}

// pciOf runs p until the guest runs and its firmware has numbered the
// buses (the NIC behind its root port shows), lists its PCI devices, and
// stops it.
func pciOf(t *testing.T, p *Process, sock string, stop chan<- os.Signal, n *notes, running <-chan struct{}) []string {
	t.Helper()
	resc := make(chan Result, 1)
	go func() { resc <- p.Supervise(context.Background()) }()
	defer func() {
		stop <- syscall.SIGQUIT
		<-resc
	}()
	select {
	case <-running:
	case <-time.After(runBound):
		t.Fatalf("the guest did not run within %s; notes:\n%s", runBound, n)
	}
	// The devices behind the root ports show once the firmware has
	// numbered the buses: wait for the NIC. QEMU sends no event for that,
	// so query-pci is asked again (every 20 ms, bounded) until it shows.
	deadline := time.Now().Add(runBound)
	for {
		devs := queryPCI(t, sock+".test")
		if slices.ContainsFunc(devs, func(d string) bool { return strings.HasSuffix(d, " "+nicID(0)) }) {
			return devs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s among the PCI devices within %s:\n%s", nicID(0), runBound, strings.Join(devs, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLateNICSameDevices: a VM whose NIC PlugNIC plugs in while QEMU waits
// paused has the PCI devices, at the same addresses, that the same VM with
// the NIC in its command line has (query-pci, after the resume).
func TestLateNICSameDevices(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "late")
	mac, _ := net.ParseMAC("52:54:00:77:00:09")
	var got [2][]string
	for i, late := range []bool{false, true} {
		tap := openTap(t, ns, "tapl")
		vm, sock := lateVM(t)
		nic := NIC{Backend: "tap", Files: []*os.File{tap}, MAC: mac, Hotplug: true}
		if late {
			vm.LateNIC = true
		} else {
			vm.NIC = &nic
		}
		p, stop, n, running := startPaused(t, vm, sock)
		if late {
			p.PlugNIC(nic)
		}
		got[i] = pciOf(t, p, sock, stop, n, running)
		if plugged := strings.Contains(n.String(), "plugged in"); plugged != late {
			t.Errorf("late %v: Options.Plugged called: %v", late, plugged)
		}
		tap.Close()
	}
	if !slices.Equal(got[0], got[1]) {
		t.Fatalf("PCI devices with the NIC plugged in late:\n%s\nwith the NIC in the command line:\n%s",
			strings.Join(got[1], "\n"), strings.Join(got[0], "\n"))
	}
}

// TestLateNICPlugFailure: a NIC that cannot be plugged in (QEMU refuses
// its device) ends the run with a set-up failure that says so, QEMU gone.
func TestLateNICPlugFailure(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "latef")
	tap := openTap(t, ns, "tapf")
	vm, sock := lateVM(t)
	vm.LateNIC = true
	p, _, n, _ := startPaused(t, vm, sock)
	pid := p.s.cmd.Process.Pid
	p.PlugNIC(NIC{Backend: "tap", Files: []*os.File{tap}}) // no MAC: device_add fails
	res := p.Supervise(context.Background())
	if res.Code != exitcode.Setup || res.Err == nil || !strings.Contains(res.Err.Error(), "NIC could not be plugged in") {
		t.Fatalf("Supervise: code %d (%v), want %d and the plug's failure; notes:\n%s", res.Code, res.Err, exitcode.Setup, n)
	}
	if alive(pid) {
		t.Fatalf("QEMU (pid %d) still runs after the failed plug", pid)
	}
	if _, err := tap.Stat(); err == nil {
		t.Fatalf("the NIC's file is still open after the failed plug")
	}
}

// TestAbortBeforeSupervise: Abort, for a set-up that failed after Start,
// kills the paused QEMU and reaps it; Supervise's end makes it a no-op.
func TestAbortBeforeSupervise(t *testing.T) {
	vm, sock := lateVM(t)
	vm.LateNIC = true
	p, _, _, _ := startPaused(t, vm, sock)
	pid := p.s.cmd.Process.Pid
	p.Abort()
	if alive(pid) {
		t.Fatalf("QEMU (pid %d) still runs after Abort", pid)
	}
	p.Abort() // again: nothing left to do
}
