package tap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"

	"github.com/vmrun/vmrun/internal/rundir"
	"github.com/vmrun/vmrun/internal/testutil"
	"github.com/vmrun/vmrun/netsetup/gc"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
)

// guestFrames returns the frames written to the guest's queue fd q
// (after the virtio-net header) until it is closed.
func guestFrames(q interface{ Read([]byte) (int, error) }) <-chan ethernet.Frame {
	c := make(chan ethernet.Frame, 64)
	go func() {
		defer close(c)
		buf := make([]byte, 65536)
		for {
			n, err := q.Read(buf)
			if err != nil {
				return
			}
			var f ethernet.Frame
			if n > len(vnetHdr) && f.UnmarshalBinary(append([]byte(nil), buf[len(vnetHdr):n]...)) == nil {
				c <- f
			}
		}
	}()
	return c
}

// TestBridgeHostRoutes: a bridge that holds no address of the host's (the
// host's is on another link) gets, once the guest is acked an address, a
// recorded /32 route to it through the bridge, and the host reaches the
// guest: a real ping's ARP and echo request reach the guest's tap, and the
// fake guest's answers complete it. Undo removes the route and its record.
func TestBridgeHostRoutes(t *testing.T) {
	testutil.RequireCmd(t, "busybox")
	ns := testutil.NewNetns(t, "hb")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	ns.MustRun(t, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	ns.MustRun(t, "ip", "link", "set", "other1", "up")
	ns.MustRun(t, "ip", "addr", "add", "10.78.0.2/24", "dev", "other0")
	ns.MustRun(t, "ip", "link", "set", "other0", "up")
	dir := vmDir(t, "hb")
	ctx, got := addrTrace()
	b := Bridge{Link: hostnet.LinkConfig{VM: "hb", LinkName: "vmrhbt", Parent: "br0", MAC: watchGuestMAC, Queues: 1}, HostRoutes: true}
	att, lan := attachWithLAN(t, ns, func() (*hostnet.Attachment, error) { return b.Attach(ctx, recorder{dir}) }, "br0")
	q := att.Files[0]
	in := guestFrames(q)
	guest, host := netip.MustParseAddr("10.78.1.57"), netip.MustParseAddr("10.78.0.2")
	broadcastACK(t, lan, guest)
	if a := awaitAddr(t, got); a.Addr != guest {
		t.Fatalf("watcher reported %+v, want %s", a, guest)
	}
	if !hasObject(dir, hostnet.ObjRoute, "10.78.1.57/32") {
		t.Errorf("the route to the guest is not recorded: %+v", dir.State().Objects)
	}
	if r := ns.MustRun(t, "ip", "route", "get", guest.String()); !strings.Contains(r, "dev br0") {
		t.Errorf("route to the guest: %s; want it through br0", r)
	}

	ping := ns.Start(t, "busybox", "ping", "-c", "1", "-W", "30", guest.String())
	write := queueWriter(t, q)
	toBridge := func(f *ethernet.Frame) {
		t.Helper()
		fb, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		write(fb)
	}
	var ap arp.Packet
	req := await(t, in, "the host's ARP request for the guest", func(f ethernet.Frame) bool {
		return f.EtherType == ethernet.EtherTypeARP && ap.UnmarshalBinary(f.Payload) == nil && ap.Operation == arp.OperationRequest && ap.TargetIP == guest
	})
	if ap.SenderIP != host {
		t.Errorf("ARP request from %s, want the host's %s", ap.SenderIP, host)
	}
	reply, err := arp.NewPacket(arp.OperationReply, watchGuestMAC, guest, ap.SenderHardwareAddr, ap.SenderIP)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := reply.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	toBridge(&ethernet.Frame{Destination: req.Source, Source: watchGuestMAC, EtherType: ethernet.EtherTypeARP, Payload: rb})
	echo := await(t, in, "the host's echo request", func(f ethernet.Frame) bool {
		p := f.Payload
		return f.EtherType == ethernet.EtherTypeIPv4 && len(p) >= 28 && p[9] == 1 && p[20] == 8 && netip.AddrFrom4([4]byte(p[16:20])) == guest
	})
	// The echo reply: addresses swapped, ICMP type 0, checksums redone.
	p := append([]byte(nil), echo.Payload...)
	hl := int(p[0]&0x0f) * 4
	copy(p[12:16], echo.Payload[16:20])
	copy(p[16:20], echo.Payload[12:16])
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], fakeguest.Checksum(p[:hl]))
	p[hl], p[hl+2], p[hl+3] = 0, 0, 0
	binary.BigEndian.PutUint16(p[hl+2:], fakeguest.Checksum(p[hl:]))
	toBridge(&ethernet.Frame{Destination: echo.Source, Source: watchGuestMAC, EtherType: ethernet.EtherTypeIPv4, Payload: p})
	awaitPing(t, ping, guest)

	att.CloseFiles()
	if err := ns.Do(att.Undo); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if r := ns.MustRun(t, "ip", "route", "show", guest.String()); strings.TrimSpace(r) != "" {
		t.Errorf("route after undo: %s", r)
	}
	if objs := dir.State().Objects; len(objs) != 0 {
		t.Errorf("records after undo: %+v", objs)
	}
}

// TestBridgeHostOnBridge: when the host has an address on the bridge, it
// reaches the guest there: no route is made for the guest's address.
func TestBridgeHostOnBridge(t *testing.T) {
	ns := testutil.NewNetns(t, "hbo")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun(t, "ip", "addr", "add", "10.78.1.2/24", "dev", "br0")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	dir := vmDir(t, "hbo")
	ctx, got := addrTrace()
	b := Bridge{Link: hostnet.LinkConfig{VM: "hbo", LinkName: "vmrhbot", Parent: "br0", MAC: watchGuestMAC, Queues: 1}, HostRoutes: true}
	att, lan := attachWithLAN(t, ns, func() (*hostnet.Attachment, error) { return b.Attach(ctx, recorder{dir}) }, "br0")
	defer func() {
		att.CloseFiles()
		if err := ns.Do(att.Undo); err != nil {
			t.Errorf("undo: %v", err)
		}
	}()
	broadcastACK(t, lan, netip.MustParseAddr("10.78.1.57"))
	awaitAddr(t, got) // reported after the route would have been made
	if objs := dir.State().Objects; len(objs) != 1 || objs[0].Kind != hostnet.ObjLink {
		t.Errorf("records: %+v, want the tap's only", objs)
	}
	if r := ns.MustRun(t, "ip", "route", "show", "10.78.1.57"); strings.TrimSpace(r) != "" {
		t.Errorf("a route to the guest on a bridge that holds the host's address: %s", r)
	}
}

// TestBridgeHostRoutesIPv6: a bridge that holds no IPv6 address of the
// host's (the host's is on another link) gets, once the guest announces a
// global IPv6 address, a recorded /128 route to it through the bridge, a
// recorded proxy entry for the host's source address, and the bridge's
// proxy NDP sysctls; the host reaches the guest: a real ping's neighbour
// solicitation (from the bridge's link-local address) and echo request
// reach the guest's tap, the guest's solicitation for the host's address
// is answered by the bridge, and its echo reply completes the ping. Undo
// removes the route and the proxy entry, restores the sysctls and leaves
// no record; so does gc from the records alone (a vmrun that died).
func TestBridgeHostRoutesIPv6(t *testing.T) {
	testutil.RequireCmd(t, "busybox")
	t.Run("undo", func(t *testing.T) { bridgeHostRoutesIPv6(t, false) })
	t.Run("gc", func(t *testing.T) { bridgeHostRoutesIPv6(t, true) })
}

func bridgeHostRoutesIPv6(t *testing.T, crash bool) {
	ns := testutil.NewNetns(t, "hb6")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	// The bridge's link-local address at once (no duplicate detection):
	// the host solicits the guest from it.
	ns.MustRun(t, "sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/br0/accept_dad")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	ns.MustRun(t, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	ns.MustRun(t, "ip", "link", "set", "other1", "up")
	ns.MustRun(t, "ip", "-6", "addr", "add", "2001:db8:78::2/64", "dev", "other0", "nodad")
	ns.MustRun(t, "ip", "link", "set", "other0", "up")
	sysctls := []string{"net/ipv6/conf/br0/forwarding", "net/ipv6/conf/br0/proxy_ndp", "net/ipv6/neigh/br0/proxy_delay"}
	readSysctls := func() string {
		t.Helper()
		return ns.MustRun(t, "sh", "-c", "cd /proc/sys && cat "+strings.Join(sysctls, " "))
	}
	before := readSysctls()
	dir := vmDir(t, "hb6")
	ctx, got := addrTrace()
	b := Bridge{Link: hostnet.LinkConfig{VM: "hb6", LinkName: "vmrhb6t", Parent: "br0", MAC: watchGuestMAC, Queues: 1}, HostRoutes: true}
	var att *hostnet.Attachment
	if err := ns.Do(func() (err error) { att, err = b.Attach(ctx, recorder{dir}); return err }); err != nil {
		t.Fatal(err)
	}
	if s := strings.Fields(readSysctls()); strings.Join(s, " ") != "1 1 0" {
		t.Errorf("the bridge's forwarding, proxy_ndp, proxy_delay: %q, want 1 1 0", s)
	}
	for _, p := range sysctls {
		if !hasObject(dir, hostnet.ObjSysctl, p) {
			t.Errorf("sysctl %s not recorded: %+v", p, dir.State().Objects)
		}
	}
	in := readICMP6(att.Files[0])
	toBridge := queueWriter(t, att.Files[0])

	// The guest's duplicate address detection of its address.
	guest, host := netip.MustParseAddr("2001:db8:78::57"), netip.MustParseAddr("2001:db8:78::2")
	snm, snmMAC := solicitedNode(guest)
	toBridge(icmp6Frame(t, watchGuestMAC, snmMAC, netip.IPv6Unspecified(), snm, ndpMsg(t, &ndp.NeighborSolicitation{TargetAddress: guest})))
	if a := awaitAddr(t, got); a.Addr != guest {
		t.Fatalf("watcher reported %+v, want %s", a, guest)
	}
	if !hasObject(dir, hostnet.ObjRoute, "2001:db8:78::57/128") || !hasObject(dir, hostnet.ObjNeigh, host.String()) {
		t.Errorf("the route to the guest or the proxy entry for the host's address is not recorded: %+v", dir.State().Objects)
	}
	if r := ns.MustRun(t, "ip", "-6", "route", "get", guest.String()); !strings.Contains(r, "dev br0") || !strings.Contains(r, "src "+host.String()) {
		t.Errorf("route to the guest: %s; want it through br0 from %s", r, host)
	}

	// The host pings the guest (soliciting it from the bridge's link-local
	// address first); the fake guest answers as a stack would.
	pingFromHost6(t, ns, in, toBridge, watchGuestMAC, guest, host, true)

	att.CloseFiles()
	undo := att.Undo
	if crash {
		objs := dir.State().Objects
		undo = func() error { return gc.Undo(objs) }
		defer func() { _ = ns.Do(att.Undo) }() // the watcher's goroutine
	}
	if err := ns.Do(undo); err != nil {
		t.Fatalf("undo (gc: %v): %v", crash, err)
	}
	if r := ns.MustRun(t, "ip", "-6", "route", "show", guest.String()); strings.TrimSpace(r) != "" {
		t.Errorf("route after undo: %s", r)
	}
	if r := ns.MustRun(t, "ip", "-6", "neigh", "show", "proxy", "dev", "br0"); strings.TrimSpace(r) != "" {
		t.Errorf("proxy entries after undo: %s", r)
	}
	if after := readSysctls(); after != before {
		t.Errorf("sysctls after undo: %q, before: %q", after, before)
	}
	if objs := dir.State().Objects; len(objs) != 0 && !crash {
		t.Errorf("records after undo: %+v", objs)
	}
}

// TestBridgeHostRoutesIPv6Shared: two VMs with host routes on the same
// bridge share its proxy NDP sysctls and the proxy entry for the host's
// address: the first to stop leaves them to the other, the last one
// restores the sysctls and removes the entry — also when the first one's
// vmrun died and gc undoes its records.
func TestBridgeHostRoutesIPv6Shared(t *testing.T) {
	t.Run("undo", func(t *testing.T) { bridgeHostRoutesIPv6Shared(t, false) })
	t.Run("gc", func(t *testing.T) { bridgeHostRoutesIPv6Shared(t, true) })
}

func bridgeHostRoutesIPv6Shared(t *testing.T, crash bool) {
	ns := testutil.NewNetns(t, "hb6s")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", "br0", "up")
	ns.MustRun(t, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	ns.MustRun(t, "ip", "link", "set", "other1", "up")
	ns.MustRun(t, "ip", "-6", "addr", "add", "2001:db8:79::2/64", "dev", "other0", "nodad")
	ns.MustRun(t, "ip", "link", "set", "other0", "up")
	readSysctls := func() string {
		t.Helper()
		return strings.Join(strings.Fields(ns.MustRun(t, "sh", "-c",
			"cd /proc/sys && cat net/ipv6/conf/br0/forwarding net/ipv6/conf/br0/proxy_ndp net/ipv6/neigh/br0/proxy_delay")), " ")
	}
	proxies := func() string {
		t.Helper()
		return strings.TrimSpace(ns.MustRun(t, "ip", "-6", "neigh", "show", "proxy", "dev", "br0"))
	}
	before := readSysctls()
	root := t.TempDir()
	type vm struct {
		dir *rundir.Dir
		att *hostnet.Attachment
	}
	var vms []vm
	for i, name := range []string{"hb6a", "hb6b"} {
		dir, _, err := rundir.Create(root, name)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Remove()
		ctx, got := addrTrace()
		mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x79, 0x00, byte(0x57 + i)}
		b := Bridge{Link: hostnet.LinkConfig{VM: name, LinkName: "vmr" + name + "t", Parent: "br0", MAC: mac, Queues: 1}, HostRoutes: true}
		var att *hostnet.Attachment
		if err := ns.Do(func() error { att, err = b.Attach(ctx, dir); return err }); err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm{dir, att})
		guest := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x79, 15: byte(0x57 + i)})
		snm, snmMAC := solicitedNode(guest)
		frame := icmp6Frame(t, mac, snmMAC, netip.IPv6Unspecified(), snm, ndpMsg(t, &ndp.NeighborSolicitation{TargetAddress: guest}))
		queueWriter(t, att.Files[0])(frame)
		awaitAddr(t, got)
		if !hasObject(dir, hostnet.ObjNeigh, "2001:db8:79::2") {
			t.Fatalf("%s: no proxy entry recorded: %+v", name, dir.State().Objects)
		}
	}
	if s := readSysctls(); s != "1 1 0" || proxies() == "" {
		t.Fatalf("with both VMs: sysctls %q, proxy entries %q", s, proxies())
	}
	for i, v := range vms {
		v.att.CloseFiles()
		undo := v.att.Undo
		if crash && i == 0 {
			// Its vmrun died: the lock is gone, gc undoes the records.
			objs := v.dir.State().Objects
			if err := v.dir.Close(); err != nil {
				t.Fatal(err)
			}
			undo = func() error { return gc.Undo(objs) }
			defer func() { _ = ns.Do(v.att.Undo) }() // the watcher's goroutine
		}
		if err := ns.Do(undo); err != nil {
			t.Fatalf("undo %d: %v", i, err)
		}
		if objs := v.dir.State().Objects; len(objs) != 0 && !(crash && i == 0) {
			t.Errorf("records of VM %d after its undo: %+v", i, objs)
		}
		if i == 0 && (readSysctls() != "1 1 0" || proxies() == "") {
			t.Errorf("the first VM's undo took the other's: sysctls %q, proxy entries %q", readSysctls(), proxies())
		}
	}
	if s := readSysctls(); s != before || proxies() != "" {
		t.Errorf("after both: sysctls %q (before: %q), proxy entries %q", s, before, proxies())
	}
}
