package ipvtap

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
)

// ETH_P_ALL in network byte order is what packet.Listen wants as protocol.
const ethPAll = 0x0003

// startLearner starts the learner — a packet socket on the ipvtap in the
// private namespace, which sees every frame the guest sends but its DHCP
// messages (the DHCP port takes those first), registering the addresses
// they reveal — until Undo.
func (x *guest) startLearner(s *hostnet.Setup) error {
	learner, err := s.GoReopening(hostnet.ServiceLearner, hostnet.LearnerPolicy, x.openLearner)
	if err != nil {
		return err
	}
	s.OnUndo(func() error { learner.Stop(); return nil })
	return nil
}

// listenLearner opens a learner's socket on the ipvtap (link a), from
// the calling thread's namespace (the private one), filtered for 0.0.0.0
// and the addresses registered so far only: the service that reads it
// sets the full filter before its first read (openLearner).
func (x *guest) listenLearner(a *netlink.LinkAttrs) (*packet.Conn, error) {
	x.mu.Lock()
	prog, err := learn.Program(x.knownWith(learn.Policy{}))
	x.mu.Unlock()
	if err != nil {
		return nil, err
	}
	conn, err := packet.Listen(&net.Interface{Index: a.Index, Name: a.Name}, packet.Raw, ethPAll, &packet.Config{Filter: prog})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", a.Name, err)
	}
	return conn, nil
}

// openLearner takes the learner's socket the private thread opened at the
// set-up (the first time), or opens one in the private namespace (when
// the service reopens it), and returns its service. Its first filter
// drops only 0.0.0.0 and the addresses registered when it was opened; the
// service reads the host's facts for the full filter before its first
// frame: the guest's frames queue on the socket meanwhile, and what the
// facts rule out is ruled out again when an address is registered
// (doRegister), so the set-up does not wait for the host's address and
// route dumps.
func (x *guest) openLearner() (func(context.Context) error, error) {
	conn := x.early
	x.early = nil
	if conn == nil {
		a := x.link.Attrs()
		err := x.inPrivate(func() error {
			var err error
			conn, err = x.listenLearner(a)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	x.mu.Lock()
	x.conn = conn
	x.mu.Unlock()
	return func(ctx context.Context) error {
		defer func() {
			x.mu.Lock()
			x.conn = nil
			x.mu.Unlock()
			closeIdle(conn)
		}()
		x.mu.Lock()
		x.refilter()
		x.mu.Unlock()
		return x.learn(ctx, conn)
	}, nil
}

// wakeOnDone makes a read blocked on conn return when ctx ends; the
// returned function undoes that.
func wakeOnDone(ctx context.Context, conn *packet.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
}

// closeIdle closes a packet socket no one reads any more, off the
// caller's path: closing one waits for an RCU grace period
// (packet_release), and Undo should not wait for it.
func closeIdle(conn *packet.Conn) {
	go conn.Close()
}

// learn reads the guest's frames until ctx ends, or the socket fails.
func (x *guest) learn(ctx context.Context, conn *packet.Conn) error {
	defer wakeOnDone(ctx, conn)()
	err := learn.ReadFrames(conn, make([]byte, learn.SnapFull), ctx.Done(), func(frame []byte) {
		ev, ok := learn.GuestAddrEvent(frame, x.guestMAC)
		switch {
		case !ok:
		case ev.Drop:
			x.unregister(ev.Addr, ev.Why)
		default:
			x.register(ev.Addr, ev.Why)
		}
	})
	if err != nil {
		return fmt.Errorf("reading the guest's frames on %s's ipvtap: %w", x.parent, err)
	}
	return nil
}
