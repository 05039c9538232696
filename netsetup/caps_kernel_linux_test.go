package netsetup

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"golang.org/x/sys/unix"
)

// effective returns the calling thread's effective capability set.
func effective(t *testing.T) uint64 {
	t.Helper()
	s, err := caps.Get()
	if err != nil {
		t.Fatal(err)
	}
	return s.Effective
}

// dropEffective lowers cs from the calling thread's effective set (they
// stay permitted), as an unprivileged vmrun's threads run.
func dropEffective(t *testing.T, cs ...int) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if err := unix.Capget(&hdr, &d[0]); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		d[c/32].Effective &^= 1 << uint(c%32)
	}
	if err := unix.Capset(&hdr, &d[0]); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegeNumbers: the numbers are the kernel's.
func TestPrivilegeNumbers(t *testing.T) {
	for p, n := range map[Privilege]int{PrivNetAdmin: unix.CAP_NET_ADMIN, PrivNetRaw: unix.CAP_NET_RAW, PrivMknod: unix.CAP_MKNOD, PrivSysAdmin: unix.CAP_SYS_ADMIN} {
		if p.Number() != n {
			t.Errorf("%s is %d, want %d", p, p.Number(), n)
		}
	}
}

// TestCapsRaisedWhereNeeded runs, on a thread whose effective set lacks
// CAP_NET_ADMIN and CAP_NET_RAW (what an unprivileged vmrun's threads look
// like: permitted, not effective), the paths that raise them: routed's
// lease-change path (hostnet.InNS, which runs in the keeper's goroutine) gets both
// and lowers them after; a set-up raising capsFor gets exactly what Needs says.
func TestCapsRaisedWhereNeeded(t *testing.T) {
	testutil.RequireRoot(t)
	const want = 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its changes
		dropEffective(t, unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_MKNOD)
		if effective(t)&want != 0 {
			t.Error("the capabilities are still effective after dropping them")
			return
		}
		ns, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		var during uint64
		if err := hostnet.InNS(ns, func() error { during = effective(t); return nil }); err != nil {
			t.Error(err)
		}
		if during&want != want {
			t.Errorf("InNS ran fn with effective set %x, without CAP_NET_ADMIN and CAP_NET_RAW", during)
		}
		if effective(t)&want != 0 {
			t.Errorf("InNS left %x effective", effective(t))
		}
		for _, m := range []Mode{Bridge, Macvtap, Routed} {
			lower := caps.Raise(capsFor(m)...)
			got := effective(t)
			lower()
			var need uint64
			for _, p := range Needs(m) {
				need |= 1 << uint(p.Number())
			}
			others := uint64(1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW | 1<<unix.CAP_MKNOD)
			if got&others != need {
				t.Errorf("caps.Raise(capsFor(%s)...): %x effective of %x, want %x", m, got&others, others, need)
			}
			if effective(t)&others != 0 {
				t.Errorf("caps.Raise(capsFor(%s)...) left %x effective", m, effective(t)&others)
			}
		}
	}()
	<-done
}
