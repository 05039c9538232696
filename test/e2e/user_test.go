package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"golang.org/x/sys/unix"
)

// userModeRoundTrip boots the test guest with --net user in ns: the guest
// fetches from a TCP server on ns's loopback through its gateway address,
// and a client on ns's loopback reaches the guest's port 80 through a
// forward. It returns the VM (stopped) for further checks.
func userModeRoundTrip(t *testing.T, g testutil.GuestImages, ns *testutil.Netns, name string, check func(*VM)) *VM {
	t.Helper()
	startPeer(t, ns, "127.0.0.1:18081", "host-loopback-ok")
	vm := Start(t, ns, "", append([]string{"--disk", g.Test, "--snapshot", "--net", "user", "--name", name,
		"--forward", "tcp:127.0.0.1:18080:80"}, probeArgs("vmrun.fetch=http://GW:18081/")...)...)
	vm.GuestIP(bootTimeout)
	vm.WaitConsole(`VMRUN-GUEST-FETCH=http://[0-9.]+:18081/ host-loopback-ok`, stepTimeout)
	if body := httpGet(t, ns, "127.0.0.1:18080"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Fatalf("forwarded port answered %q", body)
	}
	if check != nil {
		check(vm)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit code %d\n%s", code, vm.Stderr)
	}
	assertEmptyDir(t, vm.Runtime)
	return vm
}

// TestUserModePasst: with passt installed and a default route, --net user
// runs passt. The guest gets the host's uplink address (passt's way), and
// passt is vmrun's child for the VM's lifetime only.
func TestUserModePasst(t *testing.T) {
	g := requireQEMUTests(t)
	testutil.RequireCmd(t, "passt")
	l := newLAN(t, false) // passt needs a default route
	var passtPID int
	vm := userModeRoundTrip(t, g, l.Host, "e2e-passt", func(vm *VM) {
		if ip := vm.GuestIP(time.Second); ip != "10.77.0.2" {
			t.Errorf("passt guest address %s, want the host's 10.77.0.2", ip)
		}
		checkLearnt(t, l.Host, vm, "e2e-passt", "10.77.0.2", "user", "", "user mode: ")
		st, err := rundir.ReadState(filepath.Join(vm.Runtime, "e2e-passt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range st.Objects {
			if o.Kind == "process" {
				passtPID, _ = strconv.Atoi(o.Name)
			}
		}
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(passtPID) + "/cmdline")
		if passtPID == 0 || err != nil || !strings.Contains(string(cmdline), "--fd") {
			t.Errorf("no running passt recorded (pid %d, cmdline %q, %v): %+v", passtPID, cmdline, err, st.Objects)
		}
	})
	if strings.Contains(vm.Stderr.String(), "slirp") {
		t.Errorf("passt run mentions slirp:\n%s", vm.Stderr)
	}
	if passtPID != 0 {
		if err := syscall.Kill(passtPID, 0); err == nil {
			t.Errorf("passt (pid %d) still runs after vmrun exited", passtPID)
		}
	}
}

// TestUserModeSlirp: without a default route passt cannot work, and
// vmrun uses QEMU's slirp, saying so in one line.
func TestUserModeSlirp(t *testing.T) {
	g := requireQEMUTests(t)
	ns := testutil.NewNetns(t, "us") // no route: slirp
	vm := userModeRoundTrip(t, g, ns, "e2e-slirp", func(vm *VM) {
		if ip := vm.GuestIP(time.Second); ip != "10.0.2.15" {
			t.Errorf("slirp guest address %s, want 10.0.2.15", ip)
		}
		checkLearnt(t, ns, vm, "e2e-slirp", "10.0.2.15", "user", "", "user mode: ")
	})
	if !strings.Contains(vm.Stderr.String(), "slirp") {
		t.Errorf("no notice about slirp:\n%s", vm.Stderr)
	}
}

// TestDryRunUserShowsBackend: --dry-run --json names passt when it would run.
func TestDryRunUserShowsBackend(t *testing.T) {
	g := requireQEMUTests(t)
	testutil.RequireCmd(t, "passt")
	l := newLAN(t, false)
	out, errOut, code := RunVMRun(t, l.Host, runtimeDir(t), "--disk", g.Test, "--net", "user", "--dry-run", "--json")
	var dr struct {
		Plan struct{ Passt string } `json:"plan"`
		Argv []string
	}
	if code != 0 || json.Unmarshal([]byte(out), &dr) != nil {
		t.Fatalf("dry-run exit %d: %s%s", code, out, errOut)
	}
	if dr.Plan.Passt == "" || !strings.Contains(strings.Join(dr.Argv, " "), "stream,id=net0,server=off,addr.type=fd,addr.str=3") {
		t.Errorf("dry-run: passt %q, argv %q", dr.Plan.Passt, dr.Argv)
	}
}

// TestUserModePasstKilled: when vmrun is killed, QEMU dies with it (its
// parent-death signal), passt with QEMU's end of the socket, and vmrun gc
// finds nothing of them left to kill.
func TestUserModePasstKilled(t *testing.T) {
	g := requireQEMUTests(t)
	testutil.RequireCmd(t, "passt")
	l := newLAN(t, false)
	rt := runtimeDir(t)
	vm := Start(t, l.Host, rt, "--disk", g.Test, "--snapshot", "--net", "user", "--name", "e2e-passt-kill")
	vm.GuestIP(bootTimeout)
	passt := recordedPasst(t, rt, "e2e-passt-kill")
	pidfd, err := unix.PidfdOpen(passt, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if err := syscall.Kill(vm.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	vm.Wait(exitTimeout)
	// passt is not our child: wait for its exit on a pidfd.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 30000); err != nil || n != 1 {
		t.Errorf("passt (pid %d) still runs 30 s after vmrun and QEMU died", passt)
	}
	out, errOut, code := RunVMRun(t, l.Host, rt, "gc")
	if code != 0 || !strings.Contains(out, `removed the leftovers of VM "e2e-passt-kill"`) {
		t.Errorf("gc: exit %d\n%s%s", code, out, errOut)
	}
	assertEmptyDir(t, rt)
}

// TestUserModePasstIPv6: with IPv6 on the host's uplink, a forward bound
// to an IPv6 host address (tcp:[::1]:PORT:80, which slirp cannot do)
// reaches the guest through passt. (Whether passt then speaks IPv6 or IPv4
// to the guest is passt's choice; the test does not look.)
func TestUserModePasstIPv6(t *testing.T) {
	g := requireQEMUTests(t)
	testutil.RequireCmd(t, "passt")
	l := newLAN(t, false)
	l.LAN.MustRun(t, "ip", "-6", "addr", "add", "fd77::1/64", "dev", "lan0", "nodad")
	l.Host.MustRun(t, "ip", "-6", "addr", "add", "fd77::2/64", "dev", "up0", "nodad")
	l.Host.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd77::1")
	vm := Start(t, l.Host, "", "--disk", g.Test, "--snapshot", "--net", "user", "--name", "e2e-passt6",
		"--forward", "tcp:[::1]:18086:80")
	vm.WaitConsole(`VMRUN-GUEST: ready`, bootTimeout)
	// The guest's IPv6 address comes from passt's router advertisement
	// and DHCPv6 some time after boot: retry until the forward answers.
	var body string
	waitFor(t, 60*time.Second, func() bool {
		_ = l.Host.Do(func() error {
			c, err := net.DialTimeout("tcp6", "[::1]:18086", 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
			b, _ := io.ReadAll(c)
			body = string(b)
			return nil
		})
		return strings.Contains(body, "vmrun-guest-ok")
	}, func() string {
		return fmt.Sprintf("the IPv6 forward never reached the guest (last answer %q)\n%s", body, vm.Stderr)
	})
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit %d\n%s", code, vm.Stderr)
	}
}

// recordedPasst is the pid of the passt process the VM's state file in
// runtime records.
func recordedPasst(t *testing.T, runtime, name string) int {
	t.Helper()
	st, err := rundir.ReadState(filepath.Join(runtime, name))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range st.Objects {
		if o.Kind == "process" {
			if pid, err := strconv.Atoi(o.Name); err == nil && pid > 0 {
				return pid
			}
		}
	}
	t.Fatalf("no passt recorded: %+v", st.Objects)
	return 0
}

// TestUserModePasstDiesEndsRun: passt dying under a running guest ends the
// run (docs/architecture.md, "Services of an attachment"): vmrun says which
// service died and what the guest lost, stops the VM the way --timeout
// does, exits with code 2 and leaves nothing behind.
func TestUserModePasstDiesEndsRun(t *testing.T) {
	g := requireQEMUTests(t)
	testutil.RequireCmd(t, "passt")
	l := newLAN(t, false)
	rt := runtimeDir(t)
	vm := Start(t, l.Host, rt, "--disk", g.Test, "--snapshot", "--net", "user", "--name", "e2e-passt-dies")
	vm.GuestIP(bootTimeout)
	passt := recordedPasst(t, rt, "e2e-passt-dies")
	st, err := rundir.ReadState(filepath.Join(rt, "e2e-passt-dies"))
	if err != nil || st.QEMUPID == 0 {
		t.Fatalf("no QEMU recorded: %+v, %v", st, err)
	}
	if err := syscall.Kill(passt, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := vm.Wait(exitTimeout); code != 2 {
		t.Fatalf("exit code %d after passt was killed, want 2\n%s", code, vm.Stderr)
	}
	out := vm.Stderr.String()
	for _, want := range []string{
		"the guest has lost its network: powering the VM off",
		"vmrun: passt stopped (signal: killed",
		"vmrun stops the VM; start it again",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if err := syscall.Kill(st.QEMUPID, 0); err == nil {
		t.Errorf("QEMU (pid %d) still runs after vmrun exited", st.QEMUPID)
	}
	assertEmptyDir(t, rt)
}
