// Package eject waits for the guest to release a hot-plugged device
// after QMP's device_del (the guest's ACPI eject).
package eject

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmrun/vmrun/qmp"
)

// Poll is how often Released asks QEMU whether the guest has ejected the
// device (qmp.Client.DeviceGone): QEMU 7.2's DEVICE_DELETED comes 8-83
// ms (median 63) after the eject, when the device is finalized.
const Poll = 2 * time.Millisecond

// ErrNotReleased: the guest did not release the device within the bound
// (its eject is still pending in QEMU).
var ErrNotReleased = errors.New("the guest did not release its NIC")

// Released waits until the guest has released device id: QEMU took it
// out of its device tree (polled every Poll) or sent its DEVICE_DELETED
// (its id on deleted), whichever is seen first, within bound. event says
// which: a device seen gone from the tree has its DEVICE_DELETED still
// to come.
func Released(ctx context.Context, c *qmp.Client, deleted <-chan string, id string, bound time.Duration) (event bool, err error) {
	t := time.NewTimer(bound)
	defer t.Stop()
	poll := time.NewTicker(Poll)
	defer poll.Stop()
	tick := poll.C
	for {
		select {
		case got := <-deleted:
			if got == id {
				return true, nil
			}
		case <-tick:
			gone, err := c.DeviceGone(ctx, id)
			if err != nil {
				// The tree cannot be read: DEVICE_DELETED alone decides.
				tick = nil
			} else if gone {
				return false, nil
			}
		case <-t.C:
			return false, fmt.Errorf("%w %s within %s (no ACPI PCI hot-plug in the guest?)", ErrNotReleased, id, bound)
		case <-ctx.Done():
			return false, fmt.Errorf("waiting for the guest to release its NIC %s: %w", id, ctx.Err())
		}
	}
}

// Deleted waits for the DEVICE_DELETED of device id (its id on deleted),
// within bound.
func Deleted(ctx context.Context, deleted <-chan string, id string, bound time.Duration) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		select {
		case got := <-deleted:
			if got == id {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no DEVICE_DELETED for %s within %s", id, bound)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
