package hostnet

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/vmrun/vmrun/internal/rundir"
)

// UndoEach undoes objs in reverse order with one netlink handle, calling
// undo for each, and returns those that could not be undone (and must stay
// recorded) in their original order, with every error joined. A link that
// is no longer vmrun's (ErrForeignLink) is reported but not kept: there is
// nothing vmrun may remove there. It is the one loop behind `vmrun gc`, a
// run's own undo and the NAT network's shared teardown.
func UndoEach(objs []rundir.Object, undo func(*netlink.Handle, rundir.Object) error) (left []rundir.Object, err error) {
	h, err := NewHandle()
	if err != nil {
		return objs, err
	}
	defer h.Close()
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		if err := undo(h, o); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", o.Kind, o.Name, err))
			if !errors.Is(err, ErrForeignLink) {
				left = append([]rundir.Object{o}, left...)
			}
		}
	}
	return left, errors.Join(errs...)
}
