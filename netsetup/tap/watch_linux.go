package tap

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vmrun/vmrun/internal/caps"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
)

// ethPAll is ETH_P_ALL, in network byte order as packet.Listen wants it.
const ethPAll = 0x0003

// watchAddrs starts the watcher of the guest's addresses: a packet socket
// on the guest's tap or macvtap, filtered (learn.LANProgram) so that only
// the frames that tell an address reach vmrun — a DHCP ACK to the guest,
// the guest's ARP, its IPv6 neighbour solicitations, its DHCP release.
// What it learns goes to follow (when not nil), then to the set-up's
// Trace (ReportAddr): on macvtap the host's route to an address is in
// place when `vmrun wait` sees the address. It runs until Undo, restarted after a failure
// (hostnet.AddrsPolicy).
func watchAddrs(s *hostnet.Setup, follow func(hostnet.GuestAddr)) error {
	if !caps.Usable(caps.NetRaw) {
		// Information only: the guest runs as well without it.
		s.Trace.ReportNotice(fmt.Sprintf("vmrun lacks CAP_NET_RAW, so it cannot watch %s for the guest's addresses: vmrun ls and vmrun wait will not show them%s", s.Cfg.LinkName, hostLinkLoss(follow)))
		return nil
	}
	prog, err := learn.LANProgram(s.Cfg.MAC)
	if err != nil {
		return err
	}
	a := s.Link.Attrs()
	ifi := &net.Interface{Index: a.Index, Name: a.Name}
	mac, tr := s.Cfg.MAC, s.Trace
	h, err := s.GoReopening(hostnet.ServiceAddrs, hostnet.AddrsPolicy, func() (func(context.Context) error, error) {
		// The first open runs on the set-up's locked thread, a restart's on
		// one locked by GoReopening: raising is per thread.
		defer caps.Raise(caps.NetRaw)()
		conn, err := packet.Listen(ifi, packet.Raw, ethPAll, &packet.Config{Filter: prog})
		if err != nil {
			return nil, fmt.Errorf("packet socket on %s: %w", ifi.Name, err)
		}
		return func(ctx context.Context) error {
			return watchFrames(ctx, conn, mac, func(a hostnet.GuestAddr) {
				if follow != nil {
					follow(a)
				}
				tr.ReportAddr(a)
			}, tr.ReportDiscover)
		}, nil
	})
	if err != nil {
		return err
	}
	s.OnUndo(func() error { h.Stop(); return nil })
	return nil
}

// hostLinkLoss is what a macvtap guest (follow is not nil) loses without
// the watcher, for its notice.
func hostLinkLoss(follow func(hostnet.GuestAddr)) string {
	if follow == nil {
		return ""
	}
	return ", and this host cannot reach the guest through its host link"
}

// watchFrames reads conn until ctx ends, reporting each sighting and
// each of the guest's DHCPDISCOVERs, and closes conn.
func watchFrames(ctx context.Context, conn *packet.Conn, mac net.HardwareAddr, report func(hostnet.GuestAddr), discover func(xid uint32)) error {
	// Closing a packet socket waits for an RCU grace period: not on Undo's path.
	defer func() { go conn.Close() }()
	defer context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })()
	err := learn.ReadFrames(conn, make([]byte, learn.SnapFull), ctx.Done(), func(frame []byte) {
		if sg, ok := learn.LANSighting(frame, mac); ok {
			report(GuestAddr(sg))
		} else if xid, ok := learn.GuestDiscover(frame, mac); ok {
			discover(xid)
		}
	})
	if err != nil {
		return fmt.Errorf("reading the guest's frames on %s: %w", conn.LocalAddr(), err)
	}
	return nil
}

// GuestAddr converts a sighting into what the Trace reports.
func GuestAddr(sg learn.Sighting) hostnet.GuestAddr {
	src := hostnet.SourceDHCP
	switch sg.Source {
	case learn.SeenARP:
		src = hostnet.SourceARP
	case learn.SeenNDP:
		src = hostnet.SourceNDP
	}
	return hostnet.GuestAddr{Addr: sg.Addr, Server: sg.Server, Source: src, Drop: sg.Drop}
}
