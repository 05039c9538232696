package netsetup_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
)

// The test binary re-executes itself as a helper process when helperEnv
// is set; the helper's parameters come in the other variables.
const (
	helperEnv     = "VMRUN_NETSETUP_HELPER"
	helperNetns   = "VMRUN_HELPER_NETNS"
	helperRoot    = "VMRUN_HELPER_ROOT"
	helperPlan    = "VMRUN_HELPER_PLAN"
	helperCrashAt = "VMRUN_HELPER_CRASH_AT"
)

func runHelper(mode string) int {
	var err error
	switch mode {
	case "crash":
		err = helperCrash()
	case "apply-in":
		err = helperApplyIn()
	case "mkstate":
		err = helperMkstate()
	case "qemu":
		// A stand-in for QEMU: it holds the inherited queue fds until killed.
		for {
			time.Sleep(time.Hour)
		}
	default:
		err = fmt.Errorf("unknown helper %q", mode)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	return 0
}

// helperSetup locks the thread, enters the namespace and reads the plan.
func helperSetup() (netsetup.Plan, error) {
	runtime.LockOSThread()
	var p netsetup.Plan
	h, err := netns.GetFromPath(os.Getenv(helperNetns))
	if err != nil {
		return p, err
	}
	if err := netns.Set(h); err != nil {
		return p, err
	}
	return p, json.Unmarshal([]byte(os.Getenv(helperPlan)), &p)
}

// helperCrash runs vmrun's set-up the way cmd/vmrun does (runtime dir,
// state, Apply, then a QEMU stand-in holding the fds) and stops forever
// after step number $VMRUN_HELPER_CRASH_AT, for the parent to SIGKILL it.
func helperCrash() error {
	p, err := helperSetup()
	if err != nil {
		return err
	}
	crashAt, _ := strconv.Atoi(os.Getenv(helperCrashAt))
	d, _, err := rundir.Create(os.Getenv(helperRoot), p.Name)
	if err != nil {
		return err
	}
	if err := d.Update(func(s *rundir.State) { s.Name, s.PID = p.Name, os.Getpid() }); err != nil {
		return err
	}
	n := 0
	stop := func(name string) {
		n++
		fmt.Printf("STEP %d %s\n", n, name)
		if n == crashAt {
			fmt.Println("BLOCKED")
			for {
				time.Sleep(time.Hour)
			}
		}
	}
	a, err := netsetup.Apply(netsetup.WithTrace(context.Background(), &netsetup.Trace{Step: stop}), p, d)
	if err != nil {
		return err
	}
	qemu := exec.Command("/proc/self/exe", "-test.run=^$", "qemu-standin", d.Path)
	qemu.Env = append(os.Environ(), helperEnv+"=qemu")
	qemu.ExtraFiles = a.Files
	qemu.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := qemu.Start(); err != nil {
		return err
	}
	if err := d.Update(func(s *rundir.State) { s.QEMUPID = qemu.Process.Pid }); err != nil {
		return err
	}
	a.CloseFiles()
	stop("qemu")
	return fmt.Errorf("ran past the last step")
}

// helperMkstate leaves the state of a VM that died with QEMU pid
// $VMRUN_HELPER_CRASH_AT: it creates the runtime directory and exits.
func helperMkstate() error {
	var p netsetup.Plan
	if err := json.Unmarshal([]byte(os.Getenv(helperPlan)), &p); err != nil {
		return err
	}
	pid, _ := strconv.Atoi(os.Getenv(helperCrashAt))
	d, _, err := rundir.Create(os.Getenv(helperRoot), p.Name)
	if err != nil {
		return err
	}
	return d.Update(func(s *rundir.State) { s.Name, s.PID, s.QEMUPID = p.Name, os.Getpid(), pid })
}

// helperApplyIn applies a macvtap plan on a thread in namespace
// $VMRUN_HELPER_NETNS while the process's /sys belongs to another
// namespace (the parent starts it with `ip netns exec`), sends frames on
// the queue fd and reports what it saw.
func helperApplyIn() error {
	p, err := helperSetup()
	if err != nil {
		return err
	}
	b, _ := os.ReadFile("/sys/class/net/" + p.LinkName + "/ifindex")
	fmt.Printf("SYSFS-IFINDEX %s\n", strings.TrimSpace(string(b)))
	var events []string
	ctx := netsetup.WithTrace(context.Background(), &netsetup.Trace{Event: func(m string) { events = append(events, m) }})
	a, err := netsetup.Apply(ctx, p, nil)
	if err != nil {
		return err
	}
	defer a.Undo()
	for _, e := range events {
		fmt.Printf("EVENT %s\n", e)
	}
	l, err := netlink.LinkByName(p.LinkName)
	if err != nil {
		return err
	}
	fmt.Printf("IFINDEX %d\n", l.Attrs().Index)
	frame := append(make([]byte, 10), broadcastARP(p.MAC)...)
	for range 5 {
		if _, err := a.Files[0].Write(frame); err != nil {
			return fmt.Errorf("write to the queue fd: %w", err)
		}
	}
	// Count what the link sent: wait (no event for counters) until the
	// five frames are counted or a generous bound passes; the parent
	// checks the count.
	var tx uint64
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if l, err = netlink.LinkByName(p.LinkName); err != nil {
			return err
		}
		if tx = l.Attrs().Statistics.TxPackets; tx >= 5 || time.Now().After(deadline) {
			break
		}
	}
	fmt.Printf("TX %d\n", tx)
	return nil
}

// broadcastARP is an ARP request from mac for 10.77.0.1.
func broadcastARP(mac []byte) []byte {
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	f = append(f, mac...)
	f = append(f, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1)
	f = append(f, mac...)
	f = append(f, 10, 77, 0, 99, 0, 0, 0, 0, 0, 0, 10, 77, 0, 1)
	return f
}

// helperProc is a helper process started by a test; it is killed (by pid,
// with its process group) at cleanup.
type helperProc struct {
	cmd  *exec.Cmd
	out  *testutil.LineBuffer
	done chan error
}

func startHelper(t testing.TB, mode string, env []string, wrap ...string) *helperProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(wrap, self, "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	h := &helperProc{cmd: cmd, out: testutil.NewLineBuffer(), done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
		}
	})
	return h
}

// helperBound bounds a wait for a helper process (a test binary under
// -race, started on a machine that may be loaded): generous, it only ends
// a wait for something that is not coming.
const helperBound = 3 * time.Minute

// wait waits for the helper to exit.
func (h *helperProc) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("helper did not exit within %s:\n%s", d, h.out)
		return nil
	}
}

// field returns the value of the first output line starting with key.
func (h *helperProc) field(key string) string {
	sc := bufio.NewScanner(strings.NewReader(h.out.String()))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+" "); ok {
			return v
		}
	}
	return ""
}

func planJSON(t testing.TB, p netsetup.Plan) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
