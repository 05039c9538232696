package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netns is a network namespace created by a test (with `ip netns add`, so
// `ip netns exec` works on it) and deleted when the test ends.
type Netns struct {
	Name string
	Path string // /run/netns/NAME
}

// NewNetns creates a uniquely named namespace with loopback up; it and every
// process still inside it that this test started are removed at cleanup.
func NewNetns(t testing.TB, tag string) *Netns {
	t.Helper()
	RequireRoot(t)
	RequireCmd(t, "ip")
	name := Unique("vmrt-" + tag + "-")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &Netns{Name: name, Path: filepath.Join("/run/netns", name)}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

// Command returns a command that runs inside the namespace (ip netns exec,
// which also gives it a /sys of this namespace).
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (n *Netns) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *Netns) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Do runs fn on an OS thread switched into the namespace. The thread is
// discarded afterwards, so no other goroutine ever runs in the namespace.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with this goroutine.
		h, err := netns.GetFromPath(n.Path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Handle returns a netns handle for the namespace (close it when done).
func (n *Netns) Handle(t testing.TB) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Veth creates a veth pair: aName in a, bName in b, both up.
func Veth(t testing.TB, a *Netns, aName string, b *Netns, bName string) {
	t.Helper()
	a.MustRun(t, "ip", "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name)
	a.MustRun(t, "ip", "link", "set", aName, "up")
	b.MustRun(t, "ip", "link", "set", bName, "up")
}

// Process is a background process a test started; it is killed (by PID,
// its own process group) at cleanup.
type Process struct {
	Cmd *exec.Cmd
	Out *LineBuffer
	// Exited is closed once the process has ended and was reaped.
	Exited <-chan struct{}
}

// Start starts a long-running command inside the namespace, capturing its
// output; it is killed at cleanup.
func (n *Netns) Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	return StartCmd(t, cmd)
}

// StartCmd starts cmd in its own process group with output captured in a
// LineBuffer, and kills that group at cleanup.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	lb := NewLineBuffer()
	cmd.Stdout = lb
	cmd.Stderr = lb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
			return
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return &Process{Cmd: cmd, Out: lb, Exited: done}
}

// StartDnsmasq runs Debian's dnsmasq as a DHCP server (no DNS) bound to
// iface inside the namespace only, handing out first..last.
func StartDnsmasq(t testing.TB, n *Netns, iface, first, last string, extra ...string) *Process {
	t.Helper()
	bin := RequireCmd(t, "dnsmasq")
	dir := t.TempDir()
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--port=0", "--bind-interfaces", "--interface=" + iface, "--except-interface=lo",
		"--dhcp-range=" + first + "," + last + ",255.255.255.0,10m",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"),
		"--pid-file=" + filepath.Join(dir, "pid"),
		"--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility=-",
		"--user=root",
	}
	args = append(args, extra...)
	p := n.Start(t, bin, args...)
	if _, err := p.Out.WaitFor(`started, version|DHCP, IP range`, time.Minute); err != nil {
		t.Fatalf("dnsmasq did not start: %v\n%s", err, p.Out.String())
	}
	return p
}

// PIDsIn returns the PIDs of processes inside the namespace.
func (n *Netns) PIDsIn() []string {
	out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
	var pids []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			pids = append(pids, s)
		}
	}
	return pids
}

// Links returns `ip -o link` of the namespace, one name per entry, sorted
// as the kernel lists them.
func (n *Netns) Links(t testing.TB) []string {
	t.Helper()
	// Stdout only: iproute2 may warn on stderr ("Peer netns reference is
	// invalid.") in the middle of a line, which is not a link.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := n.Command(ctx, "ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip -o link show in %s: %v", n.Name, err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(l, ": ", 3)
		if len(f) >= 2 {
			names = append(names, strings.SplitN(f[1], "@", 2)[0])
		}
	}
	return names
}

// Exists reports whether the namespace file still exists.
func (n *Netns) Exists() bool {
	_, err := os.Stat(n.Path)
	return err == nil
}

// WaitNoTentative waits until no IPv6 address in the namespace (on dev,
// or on any link when dev is "") is still tentative, that is until
// duplicate address detection has ended. The kernel announces the end of
// DAD with an address update (RTM_NEWADDR without IFA_F_TENTATIVE): the
// addresses are read again at each update, never on a timer. bound only
// ends a wait for something that is not coming; the failure names the
// addresses still tentative.
func (n *Netns) WaitNoTentative(t testing.TB, dev string, bound time.Duration) {
	t.Helper()
	ns := n.Handle(t)
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	// Subscribe before the first read, so that no update is missed.
	if err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatalf("address updates in %s: %v", n.Name, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink in %s: %v", n.Name, err)
	}
	defer h.Close()
	timeout := time.After(bound)
	for {
		left, err := tentative(h, dev)
		if err != nil {
			t.Fatalf("addresses in %s: %v", n.Name, err)
		}
		if len(left) == 0 {
			return
		}
		select {
		case _, ok := <-updates:
			if !ok {
				t.Fatalf("address updates in %s ended while DAD was running on %v", n.Name, left)
			}
		case <-timeout:
			t.Fatalf("IPv6 DAD did not finish within %s in %s; still tentative: %v", bound, n.Name, left)
		}
	}
}

// tentative lists the tentative IPv6 addresses on dev (every link if "").
func tentative(h *netlink.Handle, dev string) ([]string, error) {
	var link netlink.Link
	if dev != "" {
		l, err := h.LinkByName(dev)
		if err != nil {
			return nil, err
		}
		link = l
	}
	var addrs []netlink.Addr
	var err error
	for {
		addrs, err = h.AddrList(link, netlink.FAMILY_V6)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var left []string
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			left = append(left, a.IPNet.String())
		}
	}
	return left, nil
}
