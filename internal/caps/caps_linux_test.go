package caps

import (
	"runtime"
	"testing"

	"github.com/vmrun/vmrun/internal/testutil"
)

// TestRaiseLower drops CAP_NET_ADMIN from the effective set of a locked
// throwaway thread (root has it permitted), raises it, lowers it again.
func TestRaiseLower(t *testing.T) {
	testutil.RequireRoot(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its changes
		s, err := Get()
		if err != nil {
			t.Error(err)
			return
		}
		s.Effective &^= 1 << NetAdmin
		if err := set(s); err != nil {
			t.Error(err)
			return
		}
		if now, _ := Get(); Has(now.Effective, NetAdmin) || !Usable(NetAdmin) {
			t.Error("dropped from the effective set, it must still be usable (permitted)")
		}
		lower := RaiseAll()
		if now, _ := Get(); !Has(now.Effective, NetAdmin) {
			t.Error("Raise did not make CAP_NET_ADMIN effective")
		}
		lower()
		if now, _ := Get(); Has(now.Effective, NetAdmin) {
			t.Error("lower did not restore the effective set")
		}
		// Raising what is not permitted changes nothing.
		s.Permitted &^= 1 << NetRaw
		s.Effective &^= 1 << NetRaw
		if err := set(s); err != nil {
			t.Error(err)
			return
		}
		Raise(NetRaw)()
		if now, _ := Get(); Has(now.Effective, NetRaw) || Usable(NetRaw) {
			t.Error("a capability outside the permitted set was raised")
		}
	}()
	<-done
}
