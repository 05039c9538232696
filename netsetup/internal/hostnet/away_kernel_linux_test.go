package hostnet

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
	"github.com/vmrun/vmrun/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestAway, on a thread in a namespace of the test's own: fn runs in a new
// namespace (unshare) and then in it again (netns.Set), each time with
// sockets there, and the thread is back home after each visit; a visit
// whose enter fails runs nothing and stays home.
func TestAway(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "aw")
	err := ns.Do(func() error {
		home, err := netns.Get()
		if err != nil {
			return err
		}
		defer home.Close()
		var private netns.NsHandle
		err = Away(home, func() error { return unix.Unshare(unix.CLONE_NEWNET) }, func() error {
			var err error
			private, err = netns.Get()
			return err
		})
		if err != nil {
			return err
		}
		defer private.Close()
		if private.Equal(home) {
			return errors.New("fn ran at home, not in the new namespace")
		}
		if err := atHome(home); err != nil {
			return err
		}
		seen := false
		err = Away(home, func() error { return netns.Set(private) }, func() error {
			cur, err := netns.Get()
			if err != nil {
				return err
			}
			defer cur.Close()
			seen = cur.Equal(private)
			return nil
		})
		if err != nil || !seen {
			return errors.Join(err, errors.New("the second visit did not run in the private namespace"))
		}
		if err := atHome(home); err != nil {
			return err
		}
		ran := false
		refused := errors.New("refused")
		if err := Away(home, func() error { return refused }, func() error { ran = true; return nil }); !errors.Is(err, refused) || ran {
			return errors.Join(err, errors.New("a visit whose enter failed ran fn or hid the error"))
		}
		return atHome(home)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// atHome says whether the calling thread is in home.
func atHome(home netns.NsHandle) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		return err
	}
	defer cur.Close()
	if !cur.Equal(home) {
		return errors.New("the thread did not return home")
	}
	return nil
}

// TestThread, in a namespace of the test's own: a Thread's functions run
// in its new namespace (unshare), in order, on its one thread, while the
// caller's thread stays home; once stopped, that thread is home again (or
// gone); after an enter that fails nothing runs, and each function gets
// its error.
func TestThread(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "th")
	err := ns.Do(func() error {
		home, err := netns.Get()
		if err != nil {
			return err
		}
		defer home.Close()
		th := NewThread(home, func() error { return unix.Unshare(unix.CLONE_NEWNET) })
		var private netns.NsHandle
		var order []int
		tid := 0
		first := th.Go(func() error {
			order = append(order, 1)
			tid = unix.Gettid()
			var gerr error
			private, gerr = netns.Get()
			return gerr
		})
		second := th.Go(func() error {
			order = append(order, 2)
			cur, err := netns.Get()
			if err != nil {
				return err
			}
			defer cur.Close()
			if !cur.Equal(private) || unix.Gettid() != tid {
				return errors.New("the second function ran elsewhere than the first")
			}
			return nil
		})
		if err := errors.Join(<-first, <-second); err != nil {
			return err
		}
		defer private.Close()
		if private.Equal(home) || len(order) != 2 || order[0] != 1 {
			return fmt.Errorf("ran at home (%v) or out of order (%v)", private.Equal(home), order)
		}
		if err := atHome(home); err != nil {
			return fmt.Errorf("the caller's thread: %w", err)
		}
		th.Stop()
		th.Wait()
		if after, err := netns.GetFromThread(os.Getpid(), tid); err == nil {
			defer after.Close()
			if !after.Equal(home) {
				return errors.New("the stopped thread stayed in the private namespace")
			}
		}
		refused := errors.New("refused")
		th = NewThread(home, func() error { return refused })
		ran := false
		job := th.Go(func() error { ran = true; return nil })
		th.Stop()
		th.Wait()
		if err := <-job; !errors.Is(err, refused) || ran {
			return fmt.Errorf("after a failed enter a function ran (%v) or got %v", ran, err)
		}
		return atHome(home)
	})
	if err != nil {
		t.Fatal(err)
	}
}
