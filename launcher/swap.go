package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/vmrun/vmrun/launcher/internal/eject"
	"github.com/vmrun/vmrun/launcher/internal/nicqmp"
	"github.com/vmrun/vmrun/qmp"
)

// deviceDeletedWait bounds the guest's release of the old NIC (ACPI
// eject; measured 33-37 ms median under TCG on a loaded 2-CPU host, and
// QEMU's DEVICE_DELETED a median 63 ms after it). It is generous: a
// release that comes after it leaves the guest without a NIC until the
// next switch, and a guest under nested TCG on a loaded host (the Wi-Fi
// rig in CI) is a hundred times slower than that. A release after it
// gets the old NIC plugged back in (nicSwapper.released).
var deviceDeletedWait = 30 * time.Second

// ErrNoSwap: the NIC cannot be replaced in this run.
var ErrNoSwap = errors.New("the guest's NIC cannot be replaced")

// The ids of NIC number n's root port, device and netdev.
var portID, nicID, netdevID = nicqmp.PortID, nicqmp.NICID, nicqmp.NetdevID

// carrierHold is how long RenewLink keeps the guest's carrier down: long
// enough for the guest's kernel to read the link status while it is down
// (a virtio config interrupt, then a work item; tens of ms under TCG on
// a loaded host), else it sees no change and its DHCP client nothing.
const carrierHold = 200 * time.Millisecond

// swapReq is one SwapNIC (or RenewLink) call, handed to the supervisor's
// loop.
type swapReq struct {
	ctx   context.Context
	nic   NIC
	renew bool          // RenewLink: toggle the current NIC's link, swap nothing
	built chan builtNIC // the new NIC, made by the caller while the guest ejects the old one
	live  func()        // called once the new NIC is plugged in (SwapNICLive)
	done  chan error
}

// builtNIC is the caller's new NIC (SwapNICBuild's build), or why there
// is none.
type builtNIC struct {
	nic NIC
	err error
}

// swappable: nic's backend can be added over QMP (nicqmp.Swappable).
func swappable(nic NIC) bool {
	return nicqmp.Swappable(nic.Backend, nic.Options, len(nic.Files), len(nic.VhostFiles))
}

// SwapNIC replaces the running guest's NIC (started with NIC.Hotplug) by
// one on nic's backend, in the same QEMU process: it asks the guest to
// release the old NIC (device_del), passes nic's fds (getfd) and adds the
// new netdev while the guest ejects it, waits until the guest has
// released it (eject.Released: gone from QEMU's device tree, or QEMU's
// DEVICE_DELETED, which comes tens of ms later), plugs the new NIC into the free root port with the same id scheme
// (device_add; the guest sees a new virtio-net device with nic.MAC), and
// removes the old netdev, which closes QEMU's copies of the old fds. It
// returns once the new NIC is plugged in (live under the guest). The
// caller keeps owning nic's files and may close them afterwards. The new
// backend may be a tap or QEMU's user mode (slirp) (swappable); the old
// one anything. On an error before device_del the guest keeps its NIC;
// after (the new netdev refused, device_add failed), SwapNIC plugs the
// old one back on its netdev, which still exists, once the guest has
// released it. Calls are serialised; one made before QMP is ready waits
// for it (or for ctx), one after QEMU exited returns ErrNoSwap.
func (p *Process) SwapNIC(ctx context.Context, nic NIC) error {
	return p.SwapNICLive(ctx, nic, nil)
}

// SwapNICLive is SwapNIC, and calls live (when not nil; from another
// goroutine, before SwapNICLive returns) at the moment the new NIC is
// plugged in: the new attachment is live under the guest from there on.
// What follows is the old backend's removal (netdev_del), which closes
// QEMU's copies of the old fds; when that close is the last of a
// non-persistent tap's, the kernel unregisters the tap inside it, 15-110
// ms under load, in QEMU's main loop.
func (p *Process) SwapNICLive(ctx context.Context, nic NIC, live func()) error {
	return p.SwapNICBuild(ctx, nic, func() (NIC, error) { return nic, nil }, live)
}

// SwapNICBuild is SwapNICLive with the new NIC made during the guest's
// eject of the old one: shape is the new NIC as it will be (its backend,
// the number of its fds, not the fds themselves: netsetup.Preview's),
// checked before anything is asked of the guest; build, called on the
// caller's goroutine once device_del is on its way, makes it (the new
// attachment's set-up). Should build fail, the guest gets its old NIC
// back once it has released it, and SwapNICBuild returns build's error.
// The guest is without a NIC from device_del to device_add either way;
// made during the eject, the set-up no longer adds to that time. build
// is called exactly once when SwapNICBuild gets as far as handing the
// request over, not at all when it returns before (a wrong shape, ctx
// ended, QEMU gone).
func (p *Process) SwapNICBuild(ctx context.Context, shape NIC, build func() (NIC, error), live func()) error {
	p.swapMu.Lock()
	defer p.swapMu.Unlock()
	if !swappable(shape) {
		return fmt.Errorf("%w: only a tap backend without extra options or QEMU's user mode (slirp) can be plugged in live", ErrNoSwap)
	}
	r := swapReq{ctx: ctx, nic: shape, built: make(chan builtNIC, 1), live: live, done: make(chan error, 1)}
	if err := p.hand(r); err != nil {
		return err
	}
	nic, err := build()
	if err == nil && (nic.Backend != shape.Backend || !swappable(nic)) {
		err = fmt.Errorf("%w: the new NIC (%s backend) is not the shape announced (%s)", ErrNoSwap, nic.Backend, shape.Backend)
	}
	r.built <- builtNIC{nic, err}
	return p.result(r)
}

// RenewLink has the running guest renew on the NIC it has, in place of a
// swap when its attachment is still valid (the uplink's carrier is back,
// a new LAN behind the same macvtap): it sets the current NIC's link down
// (QMP set_link on its netdev, which QEMU passes on to the NIC: the guest
// sees its carrier go), holds it down for carrierHold, sets it up again,
// and has QEMU announce the guest's MAC (announce-self). A guest's DHCP
// client that follows the carrier (systemd-networkd, dhcpcd,
// NetworkManager, udhcpc with a carrier hook) renews its lease. The NIC,
// its netdev and the guest's interface stay; it works on any NIC, hot-
// pluggable or not. Calls are serialised with SwapNIC's.
func (p *Process) RenewLink(ctx context.Context) error {
	p.swapMu.Lock()
	defer p.swapMu.Unlock()
	return p.request(swapReq{ctx: ctx, renew: true, done: make(chan error, 1)})
}

// request hands r to the supervisor's loop and waits for its result.
func (p *Process) request(r swapReq) error {
	if err := p.hand(r); err != nil {
		return err
	}
	return p.result(r)
}

// hand hands r to the supervisor's loop.
func (p *Process) hand(r swapReq) error {
	select {
	case p.s.swapc <- r:
		return nil
	case <-p.s.over:
		return fmt.Errorf("%w: QEMU has exited", ErrNoSwap)
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// result waits for the result of the request handed over.
func (p *Process) result(r swapReq) error {
	select {
	case err := <-r.done:
		return err
	case <-p.s.over:
		return fmt.Errorf("%w: QEMU exited during the change", ErrNoSwap)
	}
}

// nicSwapper runs the QMP side of SwapNIC; the supervisor's loop feeds
// it QEMU's DEVICE_DELETED events.
type nicSwapper struct {
	c       *qmp.Client
	seq     int         // the current NIC's number (nicID, netdevID, portID)
	cur     *NIC        // the current NIC's shape (shapeOf); nil: the command line's NIC
	deleted chan string // ids from DEVICE_DELETED
	step    func(string, ...any)
	notify  func(string, ...any)

	busy sync.Mutex // held by run and replug: one QMP sequence at a time

	// stranded is the NIC (number strandedSeq) whose eject a swap gave
	// up waiting for (its device_del still pending in QEMU, its netdev
	// kept), "" for none; back are the device_add arguments that plug it
	// in again.
	smu         sync.Mutex
	stranded    string
	strandedSeq int
	back        qmp.Args
}

// run carries out one request (in its own goroutine; one at a time).
func (w *nicSwapper) run(r swapReq) error {
	w.busy.Lock()
	defer w.busy.Unlock()
	if w.c == nil {
		return fmt.Errorf("%w: QMP is not ready", ErrNoSwap)
	}
	if r.renew {
		return w.renew(r.ctx)
	}
	return w.swap(r)
}

// renew toggles the current NIC's link (RenewLink). The link is set up
// again even when ctx ends during the hold.
func (w *nicSwapper) renew(ctx context.Context) error {
	id := netdevID(w.seq)
	if err := w.c.SetLink(ctx, id, false); err != nil {
		return fmt.Errorf("set_link %s down: %w", id, err)
	}
	hold := time.NewTimer(carrierHold)
	select {
	case <-hold.C:
	case <-ctx.Done():
		hold.Stop()
	}
	up, cancel := context.WithTimeout(context.WithoutCancel(ctx), commandTimeout)
	defer cancel()
	if err := w.c.SetLink(up, id, true); err != nil {
		return fmt.Errorf("set_link %s up: %w", id, err)
	}
	if err := w.c.AnnounceSelf(up); err != nil {
		return fmt.Errorf("the guest's link is up again, but announce-self failed: %w", err)
	}
	return ctx.Err()
}

// swap runs one replacement: device_del first, so that the guest's eject
// (most of a swap's time under TCG) runs while the caller makes the new
// NIC and its netdev is added; device_add once both are done.
func (w *nicSwapper) swap(r swapReq) error {
	old, n := w.seq, w.seq+1
	dctx, cancel := context.WithTimeout(r.ctx, commandTimeout)
	err := w.c.DeviceDel(dctx, nicID(old))
	cancel()
	if err != nil {
		return err // the caller's build result, buffered, is dropped
	}
	w.step("NIC swap: device_del %s sent; the new backend is made during the guest's eject", nicID(old))
	// This swap waits for the NIC's release now, stranded or not.
	w.smu.Lock()
	w.stranded, w.back = "", nil
	w.smu.Unlock()
	b := <-r.built // the caller always sends it
	ctx, cancel := context.WithTimeout(r.ctx, deviceDeletedWait+4*commandTimeout)
	defer cancel()
	added := ""
	if err = b.err; err == nil {
		if added, err = w.addNetdev(ctx, n, b.nic); err == nil {
			w.step("NIC swap: %s added", added)
		}
	}
	event, derr := w.awaitReleased(ctx, nicID(old))
	if derr != nil {
		// The guest still has the old NIC (its eject pending).
		if added != "" {
			derr = errors.Join(derr, w.c.NetdevDel(ctx, added))
		}
		if errors.Is(derr, eject.ErrNotReleased) {
			w.strand(old, r.nic)
			derr = fmt.Errorf("%w; should the guest release it later, it is plugged back in", derr)
		}
		return errors.Join(err, derr)
	}
	w.step("NIC swap: the guest released %s (%s)", nicID(old), map[bool]string{true: "DEVICE_DELETED", false: "gone from QEMU's device tree"}[event])
	if err == nil {
		err = w.c.DeviceAdd(ctx, nicArgs(n, b.nic))
	}
	if err != nil {
		// Plug the old NIC back: its netdev still exists. Also when the
		// run's context ended: the guest is not left without a NIC. Its
		// id comes back: the old device's DEVICE_DELETED must not be
		// still to come, or the next swap would take it for its own.
		if !event {
			_ = w.awaitDeleted(context.WithoutCancel(r.ctx), nicID(old))
		}
		bctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), commandTimeout)
		defer cancel()
		if berr := w.c.DeviceAdd(bctx, w.plugBack(old, r.nic)); berr != nil {
			err = errors.Join(err, fmt.Errorf("plugging the old NIC back: %w", berr))
		} else {
			err = fmt.Errorf("%w (the guest got its old NIC back)", err)
		}
		if added != "" {
			err = errors.Join(err, w.c.NetdevDel(bctx, added))
		}
		return err
	}
	w.seq, w.cur = n, shapeOf(b.nic)
	if r.live != nil {
		r.live()
	}
	w.step("NIC swap: %s plugged in on %s", nicID(n), portID(n))
	if err := w.c.NetdevDel(ctx, netdevID(old)); err != nil {
		return fmt.Errorf("the new NIC is live, but the old backend stays in QEMU: %w", err)
	}
	w.step("NIC swap: old backend %s removed", netdevID(old))
	return nil
}

// strand notes NIC number old as stranded: its eject is pending, and a
// release still to come must not leave the guest without a NIC. A
// DEVICE_DELETED already queued (the release came just after the bound)
// is taken at once.
func (w *nicSwapper) strand(old int, nic NIC) {
	id := nicID(old)
	w.smu.Lock()
	w.stranded, w.strandedSeq, w.back = id, old, w.plugBack(old, nic)
	w.smu.Unlock()
	for {
		select {
		case got := <-w.deleted:
			if got == id && w.released(got) {
				return
			}
		default:
			return
		}
	}
}

// released is told of each DEVICE_DELETED before a swap waits for it. It
// takes the one of a stranded NIC — the guest released it after a swap
// gave up — and plugs that NIC back in on its netdev (replug); it reports
// whether it took id.
func (w *nicSwapper) released(id string) bool {
	w.smu.Lock()
	defer w.smu.Unlock()
	if w.stranded == "" || id != w.stranded {
		return false
	}
	seq, back := w.strandedSeq, w.back
	w.stranded, w.back = "", nil
	go w.replug(id, seq, back)
	return true
}

// replug plugs stranded NIC id (number seq) back in, after any swap
// still running, unless that swap gave the guest another NIC (or the
// device is there again).
func (w *nicSwapper) replug(id string, seq int, back qmp.Args) {
	w.busy.Lock()
	defer w.busy.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if gone, err := w.c.DeviceGone(ctx, id); w.seq != seq || err == nil && !gone {
		return
	}
	if err := w.c.DeviceAdd(ctx, back); err != nil {
		w.notify("the guest released its NIC %s after vmrun stopped waiting for it, and plugging it back in failed: %v; the guest has no NIC until the next switch of the uplink (or a restart of the VM: vmrun stop, then start it again)", id, err)
		return
	}
	w.notify("the guest released its NIC %s after vmrun stopped waiting for it: it is plugged back in", id)
}

// plug plugs the boot's NIC in (Process.PlugNIC) as NIC number 0, on the
// port and with the ids and properties the command line would have given
// it; on failure it leaves nothing behind in QEMU.
func (w *nicSwapper) plug(ctx context.Context, nic NIC) error {
	if nic.Backend != "tap" || len(nic.Files) == 0 || len(nic.Options) != 0 {
		return errors.New("only a tap backend without extra options can be plugged in over QMP")
	}
	added, err := w.addNetdev(ctx, 0, nic)
	if err != nil {
		return err
	}
	if err := w.c.DeviceAdd(ctx, nicArgs(0, nic)); err != nil {
		return errors.Join(err, w.c.NetdevDel(ctx, added))
	}
	w.cur = shapeOf(nic)
	return nil
}

// shapeOf is what plugBack needs of nic: its MAC, MTU and queue count.
func shapeOf(nic NIC) *NIC {
	return &NIC{MAC: nic.MAC, MTU: nic.MTU, Files: make([]*os.File, len(nic.Files))}
}

// plugBack are the device_add arguments that plug NIC number old back
// (its netdev is still there): as it was, when known (a NIC plugged in
// over QMP, at boot or by a swap); else with nic's MAC.
func (w *nicSwapper) plugBack(old int, nic NIC) qmp.Args {
	if w.cur != nil {
		return nicArgs(old, *w.cur)
	}
	return nicArgs(old, NIC{MAC: nic.MAC})
}

// nicArgs are device_add's arguments for nic as NIC number n.
func nicArgs(n int, nic NIC) qmp.Args {
	return nicqmp.DeviceArgs(n, nic.MAC, nic.MTU, len(nic.Files))
}

// addNetdev passes nic's fds and adds its netdev as number n; on failure
// it leaves nothing behind in QEMU.
func (w *nicSwapper) addNetdev(ctx context.Context, n int, nic NIC) (string, error) {
	id := netdevID(n)
	var names, vnames []string
	var err error
	for i, f := range nic.Files {
		name := fmt.Sprintf("%s-q%d", id, i)
		if err = w.c.GetFD(ctx, name, f); err != nil {
			break
		}
		names = append(names, name)
	}
	for i, f := range nic.VhostFiles {
		if err != nil {
			break
		}
		name := fmt.Sprintf("%s-v%d", id, i)
		if err = w.c.GetFD(ctx, name, f); err == nil {
			vnames = append(vnames, name)
		}
	}
	if err == nil {
		err = w.c.NetdevAdd(ctx, nicqmp.BackendArgs(id, nic.Backend, nic.Options, names, vnames))
		if err == nil {
			return id, nil
		}
	}
	for _, name := range append(names, vnames...) {
		err = errors.Join(err, w.c.CloseFD(ctx, name))
	}
	return "", err
}

// awaitReleased waits until the guest has released device id
// (eject.Released); event says whether its DEVICE_DELETED came.
func (w *nicSwapper) awaitReleased(ctx context.Context, id string) (event bool, err error) {
	return eject.Released(ctx, w.c, w.deleted, id, deviceDeletedWait)
}

// awaitDeleted waits for the DEVICE_DELETED of device id.
func (w *nicSwapper) awaitDeleted(ctx context.Context, id string) error {
	return eject.Deleted(ctx, w.deleted, id, deviceDeletedWait)
}
