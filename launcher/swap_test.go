package launcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/testutil"
)

// openTap creates a non-persistent tap in ns and returns its queue fd:
// the tap exists as long as an fd on it is open.
func openTap(t testing.TB, ns *testutil.Netns, name string) *os.File {
	t.Helper()
	var f *os.File
	err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:], name)
		*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
			unix.Close(fd)
			return e
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun")
		return nil
	})
	if err != nil {
		t.Fatalf("tap %s: %v", name, err)
	}
	return f
}

// TestSwapNICRealGuest boots the test guest on tap A (in a bridge of a
// private namespace), swaps its NIC to tap B in the same QEMU, and checks
// that the guest configured its new NIC and answers through B alone: A
// is gone (QEMU closed its copy at netdev_del, the test its own); then to
// tap C, then to QEMU's user mode.
func TestSwapNICRealGuest(t *testing.T) {
	ns, p, console, n, mac, tapA := bootSwapGuest(t)
	tapB := openTap(t, ns, "tapb")
	defer tapB.Close()
	ns.MustRun(t, "ip", "link", "set", "tapb", "master", "br0", "up")
	if err := ns.Ping("10.77.0.2", 30*time.Second); err != nil {
		t.Fatalf("guest on tap A: %v", err)
	}
	start := time.Now()
	if err := p.SwapNIC(context.Background(), NIC{Backend: "tap", Files: []*os.File{tapB}, MAC: mac}); err != nil {
		t.Fatalf("SwapNIC: %v; notes:\n%s", err, n)
	}
	t.Logf("NIC swapped in %s (device_del to device_add, TCG guest)", time.Since(start).Round(time.Millisecond))
	if _, err := console.WaitFor("VMRUN-GUEST: new NIC eth0", runBound); err != nil {
		t.Fatalf("the guest did not see its new NIC: %v\nconsole:\n%s", err, console)
	}
	tapA.Close()
	if links := strings.Join(ns.Links(t), " "); strings.Contains(links, "tapa") {
		t.Fatalf("tap A still exists after the swap (QEMU kept its fd): %s", links)
	}
	if err := ns.Ping("10.77.0.2", 30*time.Second); err != nil {
		t.Fatalf("guest after the swap (only tap B left): %v\nconsole:\n%s", err, console)
	}
	// A second swap goes back to the first port, with vhost-net when the
	// host has it.
	tapC := openTap(t, ns, "tapc")
	defer tapC.Close()
	ns.MustRun(t, "ip", "link", "set", "tapc", "master", "br0", "up")
	third := NIC{Backend: "tap", Files: []*os.File{tapC}, MAC: mac}
	if vhost, err := os.OpenFile("/dev/vhost-net", os.O_RDWR, 0); err == nil {
		defer vhost.Close()
		third.VhostFiles = []*os.File{vhost}
	}
	if err := p.SwapNIC(context.Background(), third); err != nil {
		t.Fatalf("second SwapNIC: %v; notes:\n%s", err, n)
	}
	tapB.Close()
	if err := ns.Ping("10.77.0.2", 30*time.Second); err != nil {
		t.Fatalf("guest after the second swap: %v\nconsole:\n%s", err, console)
	}
	if err := p.SwapNIC(context.Background(), NIC{Backend: "socket", MAC: mac}); !errors.Is(err, ErrNoSwap) {
		t.Fatalf("SwapNIC to a socket backend: %v, want ErrNoSwap", err)
	}
	// Onto QEMU's user mode (slirp), where a guest waits without an uplink
	// when vmrun may not set NAT up: the guest sees its third new NIC.
	if err := p.SwapNIC(context.Background(), NIC{Backend: "user", MAC: mac}); err != nil {
		t.Fatalf("SwapNIC to user mode: %v; notes:\n%s", err, n)
	}
	if _, err := console.WaitFor(`(?s)(?:VMRUN-GUEST: new NIC eth0.*){3}`, runBound); err != nil {
		t.Fatalf("the guest did not see its NIC on user mode: %v\nconsole:\n%s", err, console)
	}
	tapC.Close()
	if links := strings.Join(ns.Links(t), " "); strings.Contains(links, "tapc") {
		t.Fatalf("tap C still exists after the swap to user mode: %s", links)
	}
}

// TestRenewLinkRealGuest: RenewLink toggles the running guest's carrier on
// the NIC it has — the guest sees eth0's carrier go and come back, under
// the same ifindex — and the guest answers through the same tap after it;
// a second call works on a NIC that SwapNIC replaced (the netdev's number
// follows).
func TestRenewLinkRealGuest(t *testing.T) {
	ns, p, console, n, mac, _ := bootSwapGuest(t)
	if err := ns.Ping("10.77.0.2", 30*time.Second); err != nil {
		t.Fatalf("guest before: %v", err)
	}
	start := time.Now()
	if err := p.RenewLink(context.Background()); err != nil {
		t.Fatalf("RenewLink: %v; notes:\n%s", err, n)
	}
	t.Logf("RenewLink took %s (hold %s)", time.Since(start).Round(time.Millisecond), carrierHold)
	m, err := console.WaitFor(`VMRUN-GUEST: carrier back on eth0 ifindex=(\d+)`, runBound)
	if err != nil {
		t.Fatalf("the guest did not see its carrier toggled: %v\nconsole:\n%s", err, console)
	}
	t.Logf("the guest saw its carrier back %s after the call", time.Since(start).Round(time.Millisecond))
	if strings.Contains(console.String(), "new NIC") {
		t.Fatalf("RenewLink replaced the guest's NIC:\n%s", console)
	}
	if err := ns.Ping("10.77.0.2", 30*time.Second); err != nil {
		t.Fatalf("guest after RenewLink: %v\nconsole:\n%s", err, console)
	}
	tapB := openTap(t, ns, "tapb")
	defer tapB.Close()
	ns.MustRun(t, "ip", "link", "set", "tapb", "master", "br0", "up")
	if err := p.SwapNIC(context.Background(), NIC{Backend: "tap", Files: []*os.File{tapB}, MAC: mac}); err != nil {
		t.Fatalf("SwapNIC: %v; notes:\n%s", err, n)
	}
	if _, err := console.WaitFor(`VMRUN-GUEST: new NIC eth0`, runBound); err != nil {
		t.Fatalf("no new NIC: %v", err)
	}
	if err := p.RenewLink(context.Background()); err != nil {
		t.Fatalf("RenewLink after a swap: %v; notes:\n%s", err, n)
	}
	again := `(?s)carrier back on eth0 ifindex=` + m[1] + `.*carrier back on eth0 ifindex=(\d+)`
	if m2, err := console.WaitFor(again, runBound); err != nil {
		t.Fatalf("the swapped NIC's carrier was not toggled: %v\nconsole:\n%s", err, console)
	} else if m2[1] == m[1] {
		t.Errorf("the second toggle was seen on ifindex %s, the first NIC's", m2[1])
	}
}

// bootSwapGuest boots the test guest (static 10.77.0.2/24) with a
// hot-pluggable NIC on tap "tapa" in a bridge br0 (10.77.0.1/24) of a
// private namespace, and returns once it is ready; QEMU is stopped at the
// test's end.
func bootSwapGuest(t testing.TB) (*testutil.Netns, *Process, *testutil.LineBuffer, *notes, net.HardwareAddr, *os.File) {
	t.Helper()
	testutil.RequireRoot(t)
	g := testutil.RequireGuest(t)
	ns := testutil.NewNetns(t, "swap")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun(t, "ip", "addr", "add", "10.77.0.1/24", "dev", "br0")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	tapA := openTap(t, ns, "tapa")
	t.Cleanup(func() { tapA.Close() })
	ns.MustRun(t, "ip", "link", "set", "tapa", "master", "br0", "up")
	mac, _ := net.ParseMAC("52:54:00:77:00:02")
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	vm := VM{Name: "swap", QEMU: testutil.RequireQEMU(t), MemMiB: 256, CPUs: 1, Kernel: g.Kernel, Initrd: g.Initrd,
		Append:  "console=ttyS0 vmrun.role=test vmrun.agent=off vmrun.ip=10.77.0.2/24",
		Console: ConsoleNone, QMP: qmpFile(t, sock),
		NIC: &NIC{Backend: "tap", Files: []*os.File{tapA}, MAC: mac, Hotplug: true}}
	cl, err := Build(vm)
	if err != nil {
		t.Fatal(err)
	}
	console, n, stop := testutil.NewLineBuffer(), &notes{}, make(chan os.Signal, 1)
	p, err := Start(cl, Options{QMPPath: sock, Console: console, Notify: n.add, Stderr: n, Stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	resc := make(chan Result, 1)
	go func() { resc <- p.Supervise(context.Background()) }()
	t.Cleanup(func() {
		stop <- syscall.SIGQUIT
		<-resc
	})
	if _, err := console.WaitFor("VMRUN-GUEST: ready", runBound); err != nil {
		t.Fatalf("guest not ready: %v; notes:\n%s\nconsole:\n%s", err, n, console)
	}
	return ns, p, console, n, mac, tapA
}

// BenchmarkSwapNIC measures SwapNIC on a running test guest (TCG),
// alternating between two taps: from the call to the new NIC plugged in,
// live under the guest (getfd, netdev_add, device_del, the guest's ACPI
// eject, DEVICE_DELETED, device_add: median-swap-ms, max-swap-ms), and to
// SwapNIC's return, the old backend removed too (netdev_del, whose close
// of the old tap's last fd unregisters it: median-swap-done-ms).
func BenchmarkSwapNIC(b *testing.B) {
	ns, p, _, n, mac, _ := bootSwapGuest(b)
	var took, done []time.Duration
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("tb%d", i)
		tap := openTap(b, ns, name)
		ns.MustRun(b, "ip", "link", "set", name, "master", "br0", "up")
		start := time.Now()
		var live time.Duration
		if err := p.SwapNICLive(context.Background(), NIC{Backend: "tap", Files: []*os.File{tap}, MAC: mac}, func() { live = time.Since(start) }); err != nil {
			b.Fatalf("SwapNIC %d: %v; notes:\n%s", i, err, n)
		}
		took, done = append(took, live), append(done, time.Since(start))
		tap.Close() // QEMU holds it now
	}
	slices.Sort(took)
	slices.Sort(done)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-swap-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-swap-ms")
	b.ReportMetric(float64(done[len(done)/2].Microseconds())/1000, "median-swap-done-ms")
	b.ReportMetric(0, "ns/op")
}

// qmpFile listens on path and returns the listener's file for VM.QMP.
func qmpFile(t testing.TB, path string) *os.File {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	return f
}
