package ipvtap

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
	"github.com/vmrun/vmrun/internal/udpframe"
)

// fakeUpstream is a lease as the LAN's server would grant vmrun.
var fakeUpstream = dhcpupstream.Lease{
	IP: net.IPv4(192, 168, 1, 57).To4(), Mask: net.CIDRMask(24, 32), Router: net.IPv4(192, 168, 1, 1).To4(),
	DNS: []net.IP{net.IPv4(192, 168, 1, 1).To4()}, Domain: "lan", ServerID: net.IPv4(192, 168, 1, 1).To4(),
	LeaseTime: 10 * time.Minute,
}

var guestMAC = net.HardwareAddr{0xa4, 0xc3, 0xf0, 0x12, 0x34, 0x56}

// guestMsg is a DHCP client message of the guest (the host's MAC).
func guestMsg(t *testing.T, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(guestMAC), dhcpv4.WithMessageType(typ)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAnswerFrame: whatever identifier and flags the guest's client sends,
// it is answered with vmrun's lease (address, mask, router, DNS, half the
// upstream lease time) or refused, and the frames go to it by RFC 2131's
// rules; a request for another address (the host's) is refused; RELEASE
// and DECLINE get no answer.
func TestAnswerFrame(t *testing.T) {
	cfg := proxyConfig("wlan0", guestMAC, fakeUpstream)
	if err := dhcpserve.Check(&cfg); err != nil {
		t.Fatal(err)
	}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	host := net.IPv4(192, 168, 1, 10)
	macID := dhcpv4.OptClientIdentifier(append([]byte{1}, guestMAC...))
	for _, tc := range []struct {
		name   string
		req    *dhcpv4.DHCPv4
		want   dhcpv4.MessageType // 0: no answer
		dstMAC net.HardwareAddr
		dstIP  net.IP
	}{
		{"udhcpc's discover: the MAC as identifier, no broadcast flag", guestMsg(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(macID)),
			dhcpv4.MessageTypeOffer, guestMAC, fakeUpstream.IP},
		{"dhclient's discover: no identifier", guestMsg(t, dhcpv4.MessageTypeDiscover),
			dhcpv4.MessageTypeOffer, guestMAC, fakeUpstream.IP},
		{"a discover with the broadcast flag", guestMsg(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true)),
			dhcpv4.MessageTypeOffer, bcast, net.IPv4bcast},
		{"selecting vmrun's offer", guestMsg(t, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(macID),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(fakeUpstream.ServerID)), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(fakeUpstream.IP))),
			dhcpv4.MessageTypeAck, guestMAC, fakeUpstream.IP},
		{"the host's identity asking for the host's address", guestMsg(t, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(macID),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(host))),
			dhcpv4.MessageTypeNak, bcast, net.IPv4bcast},
		{"selecting another server", guestMsg(t, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 2))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(host))),
			0, nil, nil},
		{"renewing", guestMsg(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(fakeUpstream.IP)),
			dhcpv4.MessageTypeAck, guestMAC, fakeUpstream.IP},
		{"inform", guestMsg(t, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(fakeUpstream.IP)),
			dhcpv4.MessageTypeAck, guestMAC, fakeUpstream.IP},
		{"release", guestMsg(t, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(fakeUpstream.IP)), 0, nil, nil},
		{"decline", guestMsg(t, dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(fakeUpstream.IP))), 0, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := (&udpframe.Datagram{SrcMAC: guestMAC, DstMAC: bcast, Src: net.IPv4zero, Dst: net.IPv4bcast,
				SrcPort: 68, DstPort: 67, Payload: tc.req.ToBytes()}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			req, ok := guestRequest(in)
			if !ok {
				t.Fatal("the guest's frame is not read as a DHCP message")
			}
			out, _, err := answerFrame(&cfg, req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == 0 {
				if out != nil {
					t.Fatalf("answered: %x", out)
				}
				return
			}
			d, err := udpframe.Parse(out)
			if err != nil {
				t.Fatal(err)
			}
			m, err := dhcpv4.FromBytes(d.Payload)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case m.MessageType() != tc.want || m.TransactionID != tc.req.TransactionID:
				t.Errorf("answer %s xid %s, want %s xid %s", m.MessageType(), m.TransactionID, tc.want, tc.req.TransactionID)
			case !bytes.Equal(d.DstMAC, tc.dstMAC) || !d.Dst.Equal(tc.dstIP) || !bytes.Equal(d.SrcMAC, proxyMAC) || d.SrcPort != 67 || d.DstPort != 68:
				t.Errorf("framed %s %s:%d → %s %s:%d", d.SrcMAC, d.Src, d.SrcPort, d.DstMAC, d.Dst, d.DstPort)
			}
			if tc.want == dhcpv4.MessageTypeNak || tc.req.MessageType() == dhcpv4.MessageTypeInform {
				return
			}
			if !m.YourIPAddr.Equal(fakeUpstream.IP) || m.SubnetMask().String() != "ffffff00" || !m.Router()[0].Equal(fakeUpstream.Router) ||
				!m.DNS()[0].Equal(fakeUpstream.DNS[0]) || m.IPAddressLeaseTime(0) != 5*time.Minute || !m.ServerIdentifier().Equal(fakeUpstream.ServerID) {
				t.Errorf("answer %s", m.Summary())
			}
		})
	}
}

// TestGuestRequest: only DHCP messages to port 67 are read; the filter's
// other catch (UDP with IP options) is dropped.
func TestGuestRequest(t *testing.T) {
	dns, err := (&udpframe.Datagram{SrcMAC: guestMAC, DstMAC: guestMAC, Src: net.IPv4zero, Dst: net.IPv4bcast,
		SrcPort: 5353, DstPort: 5353, Payload: []byte("not dhcp")}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string][]byte{"mDNS": dns, "garbage": []byte("x"), "empty": nil} {
		if _, ok := guestRequest(f); ok {
			t.Errorf("%s read as a DHCP message", name)
		}
	}
}

// TestGuestLeaseTime: half the upstream lease, between 10 s and an hour.
func TestGuestLeaseTime(t *testing.T) {
	for up, want := range map[time.Duration]time.Duration{
		0: time.Hour, 10 * time.Minute: 5 * time.Minute, 8 * time.Second: 10 * time.Second, 24 * time.Hour: time.Hour,
	} {
		if got := guestLeaseTime(up); got != want {
			t.Errorf("upstream %s: guest %s, want %s", up, got, want)
		}
	}
}
