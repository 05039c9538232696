package ipvtap

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
)

// ETH_P_ALL in network byte order is what packet.Listen wants as protocol.
const ethPAll = 0x0003

// startLearner starts the learner — a packet socket on the ipvtap in the
// private namespace, which sees every frame the guest sends, registering
// the addresses they reveal — and the watcher of DHCP replies to the
// guest on the parent, until Undo.
func (x *guest) startLearner(s *hostnet.Setup) error {
	learner, err := s.GoReopening(hostnet.ServiceLearner, hostnet.LearnerPolicy, x.openLearner)
	if err != nil {
		return err
	}
	replies, err := s.GoReopening(hostnet.ServiceReplies, hostnet.RepliesPolicy, x.openReplies)
	if err != nil {
		learner.Stop()
		return err
	}
	s.OnUndo(func() error {
		learner.Cancel()
		replies.Cancel()
		learner.Wait()
		replies.Wait()
		return nil
	})
	return nil
}

// openLearner opens the learner's socket, filtered for what is not known
// yet, and returns its service.
func (x *guest) openLearner() (func(context.Context) error, error) {
	x.mu.Lock()
	prog, err := learn.Program(x.known())
	x.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a := x.link.Attrs()
	var conn *packet.Conn
	err = x.inPrivate(func() error {
		var err error
		conn, err = packet.Listen(&net.Interface{Index: a.Index, Name: a.Name}, packet.Raw, ethPAll, &packet.Config{Filter: prog})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", a.Name, err)
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
		return x.learn(ctx, conn)
	}, nil
}

// openReplies opens the socket of the watcher of DHCP replies on the
// parent and returns its service.
func (x *guest) openReplies() (func(context.Context) error, error) {
	rprog, err := learn.ReplyProgram()
	if err != nil {
		return nil, err
	}
	conn, err := packet.Listen(&net.Interface{Index: x.parentIx, Name: x.parent}, packet.Raw, int(ethernet.EtherTypeIPv4), &packet.Config{Filter: rprog})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", x.parent, err)
	}
	return func(ctx context.Context) error {
		defer closeIdle(conn)
		return x.catchReplies(ctx, conn)
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
		if xid, ok := learn.GuestDHCPXID(frame, x.guestMAC); ok {
			x.dhcpTransaction(xid)
		}
		ev, ok := learn.GuestAddrEvent(frame, x.guestMAC)
		switch {
		case !ok:
		case ev.Drop:
			x.unregister(ev.Addr, ev.Why)
		default:
			if ev.Why == "DHCP request" {
				x.requested(ev.Addr)
			}
			x.register(ev.Addr, ev.Why)
		}
	})
	if err != nil {
		return fmt.Errorf("reading the guest's frames on %s's ipvtap: %w", x.parent, err)
	}
	return nil
}

// dhcpTransactionLife is how long a guest's DHCP transaction is watched
// for replies on the parent.
const dhcpTransactionLife = 2 * time.Minute

// dhcpTransaction notes a DHCP transaction the guest started.
func (x *guest) dhcpTransaction(xid uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := time.Now()
	for id, t := range x.xids {
		if now.Sub(t) > dhcpTransactionLife {
			delete(x.xids, id)
		}
	}
	x.xids[xid] = now
}

// requested drops the addresses registered from unicast offers of the
// guest's transactions that the guest did not take (it requested a).
func (x *guest) requested(a netip.Addr) {
	x.mu.Lock()
	var drop []netip.Addr
	for b := range x.offered {
		if b != a {
			drop = append(drop, b)
		}
	}
	clear(x.offered)
	x.mu.Unlock()
	for _, b := range drop {
		x.unregister(b, "the guest requested "+a.String()+" instead")
	}
}

// catchReplies watches the parent for DHCP servers' replies to the guest
// that were sent unicast, to an address ipvlan cannot hand to the guest
// until it is registered: the guest's DHCP client did not ask for
// broadcast replies. It registers the address, so the client's next try
// gets through.
func (x *guest) catchReplies(ctx context.Context, conn *packet.Conn) error {
	defer wakeOnDone(ctx, conn)()
	err := learn.ReadFrames(conn, make([]byte, learn.SnapFull), ctx.Done(), func(frame []byte) {
		r, ok := learn.DHCPServerReply(frame, x.guestMAC)
		if !ok || !r.Unicast {
			return
		}
		x.mu.Lock()
		_, ours := x.xids[r.XID]
		_, have := x.addrs[r.Addr]
		if ours && !have {
			if r.Offer {
				x.offered[r.Addr] = r.XID
			}
			x.noticeOnce("unicast-dhcp", fmt.Sprintf("%s: the guest's DHCP client does not ask for broadcast replies, so the server's reply to %s was lost; vmrun registered the address and the client's next try gets through (set the broadcast flag in the guest to save that retry, see docs/wifi.md)", x.parent, r.Addr))
		}
		x.mu.Unlock()
		if ours && !have {
			what := "DHCP ack"
			if r.Offer {
				what = "DHCP offer"
			}
			x.register(r.Addr, what+", sent unicast")
		}
	})
	if err != nil {
		return fmt.Errorf("reading DHCP replies on %s: %w", x.parent, err)
	}
	return nil
}
