package rundir

import (
	"errors"
	"sync"
	"testing"
)

// TestReadersNeverBlockAStart runs `vmrun ls` and `doctor`'s reading (List)
// without pause while a VM of the same name starts and stops again and
// again: no start may fail because someone was looking.
func TestReadersNeverBlockAStart(t *testing.T) {
	root := t.TempDir()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := List(root); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	// Each start takes the lock and lets it go again. Before readers only
	// tested the lock, a start failed within a thousand rounds here.
	for i := range 5000 {
		d, _, err := Create(root, "vm")
		if errors.Is(err, ErrBusy) {
			t.Fatalf("start %d failed while others only read: %v", i, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil { // the directory stays: the next start reuses its lock file
			t.Fatal(err)
		}
	}
}
