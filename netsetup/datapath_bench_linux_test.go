package netsetup_test

import (
	"context"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"golang.org/x/sys/unix"
)

// udpSink counts UDP bytes arriving on addr inside the lab's LAN.
type udpSink struct {
	conn  *net.UDPConn
	bytes int64
	first time.Time
	last  time.Time
}

func startUDPSink(b *testing.B, l *lab, addr string) *udpSink {
	b.Helper()
	s := &udpSink{}
	if err := l.lan.Do(func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		s.conn, err = net.ListenUDP("udp4", a)
		if err == nil {
			_ = s.conn.SetReadBuffer(8 << 20)
		}
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.conn.Close() })
	return s
}

// drain reads until nothing arrives for idle.
func (s *udpSink) drain(idle time.Duration) {
	buf := make([]byte, 65536)
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(idle))
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if s.first.IsZero() {
			s.first = now
		}
		s.last, s.bytes = now, s.bytes+int64(n)
	}
}

// BenchmarkDatapath measures the host side of each attachment without a
// VM: a fake guest on the attachment's fd (tap, macvtap, or passt's
// stream socket) sends 1400-byte UDP datagrams as fast as it can to a
// receiver on the LAN, through the bridge, macvtap, NAT (conntrack and
// masquerade) or passt (a socket per flow in user space). Each of the b.N
// runs sets the mode up afresh; it reports the median of what the receiver
// got per second (and the lowest and highest), and the median share lost.
// (QEMU's slirp has no fd to put a fake guest on: see test/e2e
// BenchmarkThroughput.) ipvtap (where the kernel has it: test/wifi runs
// it in the nested rig) goes through its DHCP port's root qdisc and
// filters; ipvtap-noqdisc is the same with that qdisc deleted after the
// set-up (test only: the guest's DHCP would reach the LAN), to tell what
// the qdisc costs.
func BenchmarkDatapath(b *testing.B) {
	const (
		datagrams = 20000
		size      = 1400
		sink      = "10.77.0.3"
	)
	for _, mode := range []string{"tap-bridge", "macvtap", "nat", "user-passt", "ipvtap", "ipvtap-noqdisc"} {
		b.Run(mode, func(b *testing.B) {
			passt := ""
			if mode == "user-passt" {
				passt = testutil.RequireCmd(b, "passt")
			}
			var mbps, loss []float64
			for range b.N {
				l := newLab(b)
				if strings.HasPrefix(mode, "ipvtap") {
					requireIPVtap(b, l.host)
				}
				l.lan.MustRun(b, "ip", "addr", "add", sink+"/24", "dev", "lan0")
				root := b.TempDir()
				b.Setenv(rundir.EnvRoot, root)
				var p netsetup.Plan
				hostIf := "up0"
				switch mode {
				case "tap-bridge":
					l.bridged(b)
					hostIf = "br0"
					p = netsetup.Plan{Name: "dp", Mode: netsetup.Bridge, Parent: "br0", MAC: netsetup.DeriveMAC("dp"), Queues: 1, LinkName: netsetup.LinkName("dp", netsetup.RoleTap)}
				case "macvtap":
					p = netsetup.Plan{Name: "dp", Mode: netsetup.Macvtap, Parent: "up0", MAC: netsetup.DeriveMAC("dp"), Queues: 1, LinkName: netsetup.LinkName("dp", netsetup.RoleMacvtap)}
				case "nat":
					p = netsetup.Plan{Name: "dp", Mode: netsetup.NAT, Parent: netsetup.NATBridge, MAC: netsetup.DeriveMAC("dp"), Queues: 1,
						LinkName: netsetup.LinkName("dp", netsetup.RoleTap), NAT: &netsetup.NATOptions{ResolvConf: "/dev/null"}}
				case "user-passt":
					p = netsetup.Plan{Name: "dp", Mode: netsetup.User, MAC: netsetup.DeriveMAC("dp"), Passt: passt}
				case "ipvtap", "ipvtap-noqdisc": // the guest shares up0's MAC; its address registered at once
					p = netsetup.Plan{Name: "dp", Mode: netsetup.IPVtap, Parent: "up0", MAC: (&ipvtapEnv{lab: l, parent: "up0"}).parentMAC(b),
						Queues: 1, LinkName: netsetup.LinkName("dp", netsetup.RoleIPVtap), GuestIP: net.ParseIP("10.77.0.50")}
				}
				p.RuntimeRoot = root
				l.host.MustRun(b, "ip", "addr", "add", "10.77.0.2/24", "dev", hostIf)
				l.host.MustRun(b, "ip", "route", "add", "default", "via", lanIP)
				a, err := l.apply(b, context.Background(), p, nil)
				if err != nil {
					b.Fatal(err)
				}
				if mode == "ipvtap-noqdisc" {
					dropRootQdisc(b, p.LinkName)
				}
				g := newBenchGuest(b, a, p)
				hop := net.ParseIP(sink)
				switch mode {
				case "tap-bridge", "macvtap", "ipvtap", "ipvtap-noqdisc":
					g.SetIP(net.ParseIP("10.77.0.50"))
				default: // NAT and passt hand out addresses and a gateway
					lease, err := g.DHCP(ctxT(b, 20*time.Second))
					if err != nil {
						b.Fatal(err)
					}
					hop = lease.Router
				}
				mac, err := g.Resolve(ctxT(b, 10*time.Second), hop)
				if err != nil {
					b.Fatal(err)
				}
				s := startUDPSink(b, l, sink+":9000")
				done := make(chan struct{})
				go func() { s.drain(time.Second); close(done) }()
				payload := make([]byte, size)
				b.ResetTimer()
				for i := range datagrams {
					if err := g.SendUDP(mac, net.ParseIP(sink), 40000, 9000, payload); err != nil {
						if i == 0 {
							b.Fatal(err)
						}
						time.Sleep(time.Millisecond) // queue full: back off
					}
				}
				<-done
				b.StopTimer()
				if s.bytes == 0 {
					b.Fatal("nothing arrived")
				}
				d := s.last.Sub(s.first)
				mbps = append(mbps, float64(s.bytes)*8/max(d.Seconds(), 1e-3)/1e6)
				loss = append(loss, 100*(1-float64(s.bytes)/float64(datagrams*size)))
				g.Close()
				a.CloseFiles()
				if err := a.Undo(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(medianF(mbps), "median-Mbit/s")
			b.ReportMetric(slices.Min(mbps), "min-Mbit/s")
			b.ReportMetric(slices.Max(mbps), "max-Mbit/s")
			b.ReportMetric(medianF(loss), "median-%lost")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// dropRootQdisc deletes the root qdisc of link in vmrun's private
// namespace (the ipvtap's DHCP port: its filters go with it).
func dropRootQdisc(b *testing.B, link string) {
	b.Helper()
	h, l := privateLink(b, link)
	defer h.Close()
	qs, err := h.QdiscList(l)
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT {
			if err := h.QdiscDel(q); err != nil {
				b.Fatal(err)
			}
			return
		}
	}
	b.Fatalf("%s has no root qdisc", link)
}

// newBenchGuest puts a fake guest on the attachment's fd.
func newBenchGuest(b *testing.B, a *netsetup.Attachment, p netsetup.Plan) *fakeguest.Guest {
	b.Helper()
	f := a.Files[0]
	if a.Backend != "stream" {
		return fakeguest.New(f, p.MAC, true)
	}
	// The socketpair end is blocking (QEMU wants it so): make it pollable.
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		b.Fatal(err)
	}
	nf := os.NewFile(uintptr(fd), "passt-stream")
	b.Cleanup(func() { nf.Close() })
	return fakeguest.NewStream(nf, p.MAC)
}
