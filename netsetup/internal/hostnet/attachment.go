package hostnet

import (
	"context"
	"net"
	"os"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/service"
)

// Recorder persists each host object before it is created (see rundir.Dir).
type Recorder interface {
	Record(rundir.Object) error
	Forget(rundir.Object) error
}

// Attacher is one network mode's set-up, configured by netsetup from a
// plan: Attach creates what the mode needs, recording each host object
// with rec before it exists, and returns the attachment, or undoes
// everything it did and returns why not.
type Attacher interface {
	Attach(ctx context.Context, rec Recorder) (*Attachment, error)
}

// NopRecorder records nothing.
type NopRecorder struct{}

// Record does nothing.
func (NopRecorder) Record(rundir.Object) error { return nil }

// Forget does nothing.
func (NopRecorder) Forget(rundir.Object) error { return nil }

// Attachment is an applied network plan: what QEMU needs, and how to undo it.
type Attachment struct {
	// Backend is the QEMU -netdev type: "tap", "user", "stream"; "" for none.
	Backend string
	// Files are the queue fds (tap, macvtap, ipvtap); VhostFiles the matching
	// /dev/vhost-net fds, or none.
	Files, VhostFiles []*os.File
	// MAC is the guest NIC's MAC.
	MAC net.HardwareAddr
	// MTU is the MTU of the link the guest sits on (0: unknown); pass it to
	// the guest NIC (virtio-net host_mtu) when it is not 1500.
	MTU int
	// LinkName is the host link created for the guest ("" for user/none).
	LinkName string
	// Options are extra netdev options (hostfwd=..., addr.path=...).
	Options []string
	// Undo removes everything Apply created, in reverse order; it runs once
	// and later calls return the first result. Never nil. It stops the
	// attachment's services before it removes what they use.
	Undo func() error
	// Services are the attachment's background services (see NewServices);
	// nil for a mode that runs none.
	Services *service.Group
	// Reregister, when not nil, registers the guest again on a new LAN
	// behind the same parent, in place (routed with a leased address: the
	// upstream lease taken anew, the guest's route, proxy entry and DHCP
	// responder moved to the new address). It returns once the attachment
	// serves the new registration, saying what the guest gets; the guest's
	// carrier is the caller's to toggle so that the guest asks again.
	Reregister func(ctx context.Context) (string, error)
}

// Done is closed when the attachment can no longer serve the guest: one of
// its services is dead (docs/architecture.md, "Services of an attachment",
// says which and what the run does then). It is nil, never ready, for an
// attachment without services.
func (a *Attachment) Done() <-chan struct{} {
	if a == nil || a.Services == nil {
		return nil
	}
	return a.Services.Done()
}

// Err says, once Done is closed, which service died, what the guest lost
// and what to do, in one sentence (a *service.DeadError); nil before.
func (a *Attachment) Err() error {
	if a == nil || a.Services == nil {
		return nil
	}
	return a.Services.Err()
}

// NewServices returns the service group of an attachment Apply is making.
// Services outlive Apply, whose context a stop request during set-up
// cancels: the group keeps ctx's values but not its cancellation, and
// ends when the attachment's Undo stops it. Restarts are reported as
// notices on ctx's Trace.
func NewServices(ctx context.Context) *service.Group {
	return service.New(context.WithoutCancel(ctx), TraceFrom(ctx).ReportNotice)
}

// CloseFiles closes the attachment's fds in this process (after QEMU has
// inherited them), so that a non-persistent tap disappears with QEMU.
func (a *Attachment) CloseFiles() {
	for _, f := range a.Files {
		if f != nil {
			f.Close()
		}
	}
	for _, f := range a.VhostFiles {
		if f != nil {
			f.Close()
		}
	}
}
