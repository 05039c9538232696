package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"golang.org/x/sys/unix"
)

// testUser is a system user and group a test creates (and removes).
type testUser struct {
	name     string
	uid, gid int
}

func newTestUser(t *testing.T) testUser {
	t.Helper()
	for _, c := range []string{"useradd", "userdel", "groupdel", "setpriv"} {
		testutil.RequireCmd(t, c)
	}
	name := fmt.Sprintf("vmrtu%d", os.Getpid()%100000)
	// The group comes from `vmrun setup --group`; the user joins it.
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
		// userdel removes the group of the same name with the user; it is
		// left only when useradd never ran.
		if _, err := user.LookupGroup(name); err == nil {
			if out, err := exec.Command("groupdel", name).CombinedOutput(); err != nil {
				t.Errorf("groupdel %s: %v: %s", name, err, out)
			}
		}
	})
	return testUser{name: name}
}

// create adds the user to the (existing) group of the same name.
func (u *testUser) create(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-g", u.name, u.name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	us, err := user.Lookup(u.name)
	if err != nil {
		t.Fatal(err)
	}
	u.uid, _ = strconv.Atoi(us.Uid)
	u.gid, _ = strconv.Atoi(us.Gid)
}

// as returns the command prefix that runs a program as the user inside
// ns, with runtime root rt.
func (u testUser) as(ns *testutil.Netns, rt string) []string {
	return []string{"ip", "netns", "exec", ns.Name, "setpriv", "--reuid=" + u.name, "--regid=" + u.name, "--init-groups",
		"env", "VMRUN_RUNTIME_DIR=" + rt, "HOME=/nonexistent"}
}

// run runs argv and returns stdout, stderr and the exit code.
func run(t *testing.T, argv ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not finish within %s\n--- stdout:\n%s\n--- stderr:\n%s", argv, exitTimeout, out.String(), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return out.String(), errb.String(), code
}

// startArgv is Start for an arbitrary command line (vmrun as another user).
func startArgv(t *testing.T, rt string, argv ...string) *VM {
	t.Helper()
	return startCmd(t, exec.Command(argv[0], argv[1:]...), rt)
}

// setupPermitted is what `vmrun setup` puts in the permitted set:
// CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_MKNOD (27).
const setupPermitted = 1<<12 | 1<<13 | 1<<27

// capLine returns a "CapXxx:" value of /proc/PID/status.
func capLine(t *testing.T, pid int, key string) (uint64, int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var v uint64
	uid := -1
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == key+":" {
			v, _ = strconv.ParseUint(f[1], 16, 64)
		}
		if len(f) >= 2 && f[0] == "Uid:" {
			uid, _ = strconv.Atoi(f[1])
		}
	}
	return v, uid
}

// member is vmrun installed by `vmrun setup` (its ACL allowing up0) and a
// user in its group, with a copy of the test disk the user can read.
type member struct {
	u                  testUser
	dir, acl, bin, img string
}

// installForMember builds vmrun with a test ACL path, installs it with
// `vmrun setup` for a new group and user, and copies the test disk.
func installForMember(t *testing.T, g testutil.GuestImages) member {
	t.Helper()
	u := newTestUser(t)
	dir, err := os.MkdirTemp("", "vrsetup")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	acl := filepath.Join(dir, "allow.conf")
	build := filepath.Join(dir, "build")
	// The ACL path and QEMU's system user are fixed at build time; this
	// build's are the test's (setup creates the user: removed at cleanup).
	qemuUser := u.name + "q"
	t.Cleanup(func() {
		if _, err := user.Lookup(qemuUser); err == nil {
			if out, err := exec.Command("userdel", qemuUser).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v: %s", qemuUser, err, out)
			}
		}
	})
	ldflags := "-X main.aclPath=" + acl + " -X github.com/vmrun/vmrun/internal/privdrop.SystemUser=" + qemuUser
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", build, "github.com/vmrun/vmrun/cmd/vmrun").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "bin", "vmrun")
	out, errOut, code := run(t, build, "setup", "--bin", bin, "--group", u.name, "--allow", "up0", "--no-networkmanager")
	if code != 0 || !strings.Contains(out, "cap_net_admin,cap_net_raw,cap_mknod+p") || !strings.Contains(out, "created system user "+qemuUser) {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := user.Lookup(qemuUser); err != nil {
		t.Fatalf("setup did not create QEMU's user %s: %v", qemuUser, err)
	}
	u.create(t)
	if b, err := os.ReadFile(acl); err != nil || !strings.Contains(string(b), "allow up0\n") {
		t.Fatalf("ACL %q, %v", b, err)
	}
	img := filepath.Join(dir, "test.qcow2")
	if err := os.Rename(copyFile(t, g.Test), img); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(img, 0o644); err != nil {
		t.Fatal(err)
	}
	return member{u: u, dir: dir, acl: acl, bin: bin, img: img}
}

// runtimeDir is a runtime root owned by the member.
func (m member) runtimeDir(t *testing.T) string {
	t.Helper()
	rt, err := os.MkdirTemp("", "vru")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	if err := os.Chown(rt, m.u.uid, m.u.gid); err != nil {
		t.Fatal(err)
	}
	return rt
}

// withTun returns the command prefix as (from testUser.as) so that the
// user can open /dev/net/tun, which a Debian system with udev makes 0666
// and a machine without udev may leave 0600: then the program runs in a
// mount namespace of its own where a 0666 node of the same device is
// bound over /dev/net/tun. The host's node is never changed.
func (m member) withTun(t *testing.T, as []string) []string {
	t.Helper()
	fi, err := os.Stat("/dev/net/tun")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o006 == 0o006 {
		return as
	}
	node := filepath.Join(m.dir, "tun")
	if _, err := os.Stat(node); err != nil {
		if err := syscall.Mknod(node, syscall.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(node, 0o666); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	// as is "ip netns exec NS" followed by what runs as the user.
	out := append([]string{}, as[:4]...)
	out = append(out, "unshare", "--mount", "--propagation", "private", "sh", "-c", `mount --bind "$0" /dev/net/tun && exec "$@"`, node)
	return append(out, as[4:]...)
}

// TestUnprivilegedWithSetup: `vmrun setup` installs a vmrun with file
// capabilities for a group; a member of it, not root:
//   - gets macvtap from --net auto on a veth uplink the ACL allows, and a
//     running guest whose QEMU has no capabilities at all (vmrun itself
//     has none effective while the guest runs);
//   - is refused a parent the ACL does not allow (auto falls back to user);
//   - cannot have vmrun delete a link vmrun did not create.
//
// Without setup, the same user's auto plan is user mode, saying how to get more.
func TestUnprivilegedWithSetup(t *testing.T) {
	g := requireQEMUTests(t)
	m := installForMember(t, g)
	u, dir, acl, bin, img := m.u, m.dir, m.acl, m.bin, m.img

	l := newLAN(t, false)
	testutil.Veth(t, l.Host, "up1", l.LAN, "lan1") // an interface the ACL does not list
	rt := m.runtimeDir(t)
	as := u.as(l.Host, rt)
	vmrunAs := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append(append(append([]string{}, as...), bin), args...)...)
	}
	plan := func(args ...string) (p struct{ Mode, Parent, Notice string }) {
		t.Helper()
		out, errOut, code := vmrunAs(append([]string{"net", "plan", "--json"}, args...)...)
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil {
			t.Fatalf("net plan %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return p
	}
	if p := plan(); p.Mode != "macvtap" || p.Parent != "up0" {
		t.Errorf("auto as a member of the group: %+v, want macvtap on up0", p)
	}
	if p := plan("--uplink", "up1"); p.Mode != "user" || !strings.Contains(p.Notice, "up1 is not allowed in "+acl) {
		t.Errorf("auto on up1 (not in the ACL): %+v, want user mode saying why", p)
	}
	_, errOut, code := vmrunAs("--disk", img, "--snapshot", "--net", "macvtap:up1", "--name", "denied")
	if code != 2 || !strings.Contains(errOut, `add "allow up1"`) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("macvtap on up1: exit %d, want 2 and one line naming the ACL:\n%s", code, errOut)
	}

	before := snapshotLinks(t, l.Host)
	vm := startArgv(t, rt, append(append(append([]string{}, as...), bin), "--disk", img, "--snapshot", "--net", "auto", "--name", "unpriv", "--console", "serial")...)
	if ip := vm.GuestIP(bootTimeout); !strings.HasPrefix(ip, "10.77.0.") {
		t.Errorf("guest address %s is not from the LAN", ip)
	}
	st, err := rundir.ReadState(filepath.Join(rt, "unpriv"))
	if err != nil || st.QEMUPID == 0 || st.Mode != "macvtap" {
		t.Fatalf("state %+v, %v", st, err)
	}
	for _, key := range []string{"CapEff", "CapPrm", "CapAmb", "CapInh"} {
		if v, uid := capLine(t, st.QEMUPID, key); v != 0 || uid != u.uid {
			t.Errorf("QEMU (pid %d): %s %x, uid %d; want no capabilities, uid %d", st.QEMUPID, key, v, uid, u.uid)
		}
	}
	if eff, uid := capLine(t, vm.PID(), "CapEff"); eff != 0 || uid != u.uid {
		t.Errorf("vmrun while the guest runs: CapEff %x (uid %d), want none effective", eff, uid)
	}
	if prm, _ := capLine(t, vm.PID(), "CapPrm"); prm != setupPermitted {
		t.Errorf("vmrun's permitted capabilities %x, want cap_net_admin, cap_net_raw and cap_mknod", prm)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit %d\n%s", code, vm.Stderr)
	}
	if after := snapshotLinks(t, l.Host); !reflect.DeepEqual(after, before) {
		t.Errorf("links after exit %v, before %v", after, before)
	}

	// A link vmrun did not create, recorded in a forged state file of the
	// user's: gc refuses to delete it.
	l.Host.MustRun(t, "ip", "link", "add", "vmrvictim0", "type", "bridge")
	victim := filepath.Join(rt, "victim")
	if err := os.MkdirAll(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(rundir.State{Name: "victim", PID: 1, Objects: []rundir.Object{
		{Kind: "link", Name: "vmrvictim0", Detail: map[string]string{"type": "bridge", "alias": "vmrun:victim"}}}})
	if err := os.WriteFile(filepath.Join(victim, "state.json"), forged, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{victim, filepath.Join(victim, "state.json")} {
		if err := os.Chown(p, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
	_, errOut, code = vmrunAs("gc")
	if !strings.Contains(errOut, `link vmrvictim0 (bridge, alias "", `) || !strings.Contains(errOut, "is not the one vmrun recorded") {
		t.Errorf("gc of a forged record: exit %d\n%s", code, errOut)
	}
	if links := snapshotLinks(t, l.Host); !strings.Contains(strings.Join(links, " "), "vmrvictim0") {
		t.Errorf("the foreign link was deleted: %v", links)
	}

	// The same user with a vmrun without capabilities gets user mode and
	// is told how to get more.
	build := filepath.Join(dir, "build")
	plain := filepath.Join(dir, "plain-vmrun")
	if out, err := exec.Command("cp", build, plain).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	out, errOut, code := run(t, append(append([]string{}, as...), plain, "net", "plan", "--json")...)
	var p struct{ Mode, Notice string }
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Mode != "user" || !strings.Contains(p.Notice, "vmrun setup") {
		t.Errorf("without capabilities: exit %d, %+v\n%s%s", code, p, out, errOut)
	}
}

// TestUnprivilegedRouted: a member of group vmrun, not root, with the
// vmrun `vmrun setup` installed, runs a routed guest on a veth uplink:
// vmrun leases the guest an address from the LAN's dnsmasq (a packet
// socket: CAP_NET_RAW), routes and proxies it (CAP_NET_ADMIN, the uplink's
// sysctls); the LAN pings the guest and fetches its page; QEMU has no
// capabilities, vmrun none effective while the guest runs; SIGTERM ends
// it with 0 and the host is as before.
func TestUnprivilegedRouted(t *testing.T) {
	g := requireQEMUTests(t)
	m := installForMember(t, g)
	l := newLAN(t, false)
	waitNoTentative(t, l)
	rt := m.runtimeDir(t)
	argv := append(m.withTun(t, m.u.as(l.Host, rt)), m.bin)
	before := routedHostState(t, l)
	vm := startArgv(t, rt, append(argv, "--disk", m.img, "--snapshot", "--net", "routed", "--name", "unpriv-routed", "--console", "serial")...)
	mk := vm.WaitConsole(`VMRUN-GUEST-IP=(\S+) GW=(\S+)`, bootTimeout)
	ip, n, err := net.ParseCIDR(mk[1])
	if ip4 := ip.To4(); err != nil || ip4 == nil || ip4[2] != 0 || ip4[3] < 100 || ip4[3] > 150 || n.Mask.String() != "ffffffff" || mk[2] != "169.254.0.1" {
		t.Fatalf("guest marker %q: want a lease of the LAN's dnsmasq as /32 with GW=169.254.0.1\n%s", mk[0], vm.Stderr)
	}
	if !strings.Contains(vm.Stderr.String(), "(leased from 10.77.0.1 with client-id vmrun-unpriv-routed") {
		t.Errorf("stderr does not name the upstream lease:\n%s", vm.Stderr)
	}
	st, err := rundir.ReadState(filepath.Join(rt, "unpriv-routed"))
	if err != nil || st.QEMUPID == 0 || st.Mode != "routed" {
		t.Fatalf("state %+v, %v", st, err)
	}
	for _, key := range []string{"CapEff", "CapPrm", "CapAmb", "CapInh"} {
		if v, uid := capLine(t, st.QEMUPID, key); v != 0 || uid != m.u.uid {
			t.Errorf("QEMU (pid %d): %s %x, uid %d; want no capabilities, uid %d", st.QEMUPID, key, v, uid, m.u.uid)
		}
	}
	if eff, uid := capLine(t, vm.PID(), "CapEff"); eff != 0 || uid != m.u.uid {
		t.Errorf("vmrun while the guest runs: CapEff %x (uid %d), want none effective", eff, uid)
	}
	if prm, _ := capLine(t, vm.PID(), "CapPrm"); prm != setupPermitted {
		t.Errorf("vmrun's permitted capabilities %x, want %x", prm, setupPermitted)
	}
	vm.WaitConsole(`VMRUN-GUEST: ready`, stepTimeout)
	ping(t, l.LAN, ip.String())
	if body := httpGet(t, l.LAN, ip.String()+":80"); !strings.Contains(body, "vmrun-guest-ok") {
		t.Fatalf("guest TCP port answered %q", body)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, vm.Stderr)
	}
	assertRoutedHostUnchanged(t, l, before)
	assertEmptyDir(t, vm.Runtime)
}

// TestUnprivilegedAutoParksOnUserMode: a member of the group (vmrun from
// `vmrun setup`: no NAT, which needs root) runs a --net auto guest on
// macvtap. The host's default route goes: the guest must move to QEMU's
// user mode (slirp, hot-added over QMP: it needs no uplink) and take its
// address from slirp's DHCP; the route comes back: the guest must move
// back to a macvtap on up0, take a LAN address and answer ping from the
// LAN. One QEMU, two switches; nothing left after SIGTERM.
func TestUnprivilegedAutoParksOnUserMode(t *testing.T) {
	g := requireQEMUTests(t)
	m := installForMember(t, g)
	l := newLAN(t, false)
	rt := m.runtimeDir(t)
	before := snapshotLinks(t, l.Host)
	argv := append(m.u.as(l.Host, rt), m.bin)
	vm := startArgv(t, rt, append(argv, "--disk", m.img, "--snapshot", "--net", "auto", "--name", "unpriv-park", "--console", "serial", "-v")...)
	if ip := vm.GuestIP(bootTimeout); !strings.HasPrefix(ip, "10.77.0.") {
		t.Fatalf("guest address %s is not from the LAN", ip)
	}
	if _, err := vm.Stderr.WaitFor(`following the uplink \(up0\)`, stepTimeout); err != nil {
		t.Fatal(err)
	}
	first, err := rundir.ReadState(filepath.Join(rt, "unpriv-park"))
	if err != nil || first.Mode != "macvtap" {
		t.Fatalf("state %+v, %v; want macvtap", first, err)
	}
	start := time.Now()
	l.Host.MustRun(t, "ip", "route", "del", "default")
	park, err := vm.Stderr.WaitFor(`network: macvtap → user \(there is no default route any more[^\n]*; switched in (\d+) ms`, stepTimeout)
	if err != nil {
		t.Fatal(err)
	}
	vm.WaitConsole(`(?s)(?:VMRUN-GUEST-IP=[^\n]*\n.*){1}VMRUN-GUEST-IP=10\.0\.2\.15/`, bootTimeout)
	t.Logf("route gone → parked on user mode (switched in %s ms); the guest had slirp's lease %v after the route went", park[1], time.Since(start).Round(time.Millisecond))
	start = time.Now()
	l.Host.MustRun(t, "ip", "route", "add", "default", "via", "10.77.0.1")
	back, err := vm.Stderr.WaitFor(`network: user → macvtap \(an uplink is back \(up0, ethernet\)[^\n]*; switched in (\d+) ms`, stepTimeout)
	if err != nil {
		t.Fatal(err)
	}
	ip := vm.WaitConsole(`(?s)(?:VMRUN-GUEST-IP=[^\n]*\n.*){2}VMRUN-GUEST-IP=(10\.77\.0\.\d+)/`, bootTimeout)[1]
	t.Logf("route back → macvtap (switched in %s ms); the guest had %s %v after the route came back", back[1], ip, time.Since(start).Round(time.Millisecond))
	ping(t, l.LAN, ip)
	st, err := rundir.ReadState(filepath.Join(rt, "unpriv-park"))
	if err != nil || st.QEMUPID != first.QEMUPID || st.Switches != 2 || st.Mode != "macvtap" {
		t.Errorf("after parking and coming back: state %+v, %v; want QEMU %d, 2 switches, macvtap", st, err, first.QEMUPID)
	}
	vm.Signal(syscall.SIGTERM)
	if code := vm.Wait(exitTimeout); code != 0 {
		t.Fatalf("exit %d\n%s", code, vm.Stderr)
	}
	if after := snapshotLinks(t, l.Host); !reflect.DeepEqual(after, before) {
		t.Errorf("links after exit %v, before %v", after, before)
	}
}
