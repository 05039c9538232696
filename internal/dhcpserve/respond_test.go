package dhcpserve

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// MACs of the fake guest and host in these tests.
var (
	testGuestMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	testHostMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
)

// routedConfig is the routed-mode lease: a /32 with an off-link router.
func routedConfig() Config {
	return Config{
		Link:      "vmrt0",
		ClientMAC: testGuestMAC,
		Lease: Lease{
			IP:     net.IPv4(10, 99, 0, 77),
			Mask:   net.CIDRMask(32, 32),
			Router: net.IPv4(169, 254, 0, 1),
			DNS:    []net.IP{net.IPv4(10, 99, 0, 53)},
			Routes: []Route{
				{Dest: &net.IPNet{IP: net.IPv4(169, 254, 0, 1), Mask: net.CIDRMask(32, 32)}, Router: net.IPv4zero},
				{Dest: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Router: net.IPv4(169, 254, 0, 1)},
			},
			LeaseTime: 10 * time.Minute,
			Domain:    "vm.test",
			MTU:       1400,
		},
	}
}

func normalized(t *testing.T, cfg Config) *Config {
	t.Helper()
	if err := normalize(&cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func request(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(testGuestMAC)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire format, as the server sees it.
	m, err = dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRespond(t *testing.T) {
	cfg := normalized(t, routedConfig())
	lease := cfg.Lease.IP
	wrong := net.IPv4(10, 99, 0, 78)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	clientID := []byte("\x00vmrun-test")
	type want struct {
		typ    dhcpv4.MessageType // 0: no answer
		yiaddr net.IP
		dstMAC net.HardwareAddr
		dstIP  net.IP
		times  bool // lease time options present
	}
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		want want
	}{
		{"discover, broadcast flag",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithBroadcast(true)),
			want{dhcpv4.MessageTypeOffer, lease, bcast, net.IPv4bcast, true}},
		{"discover, unicast",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)),
			want{dhcpv4.MessageTypeOffer, lease, testGuestMAC, lease, true}},
		{"selecting, right address",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithBroadcast(true),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.Lease.ServerID)), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(lease))),
			want{dhcpv4.MessageTypeAck, lease, bcast, net.IPv4bcast, true}},
		{"selecting, wrong address",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.Lease.ServerID)), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(wrong))),
			want{dhcpv4.MessageTypeNak, nil, bcast, net.IPv4bcast, false}},
		{"selecting another server",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(lease))),
			want{}},
		{"init-reboot, right address",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(lease))),
			want{dhcpv4.MessageTypeAck, lease, testGuestMAC, lease, true}},
		{"init-reboot, wrong address",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(wrong))),
			want{dhcpv4.MessageTypeNak, nil, bcast, net.IPv4bcast, false}},
		{"renewing",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(lease)),
			want{dhcpv4.MessageTypeAck, lease, testGuestMAC, lease, true}},
		{"rebinding with broadcast flag still unicast to ciaddr",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(lease), dhcpv4.WithBroadcast(true)),
			want{dhcpv4.MessageTypeAck, lease, testGuestMAC, lease, true}},
		{"renewing the wrong address",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(wrong)),
			want{dhcpv4.MessageTypeNak, nil, bcast, net.IPv4bcast, false}},
		{"request naming nothing",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)),
			want{dhcpv4.MessageTypeNak, nil, bcast, net.IPv4bcast, false}},
		{"inform",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(lease)),
			want{dhcpv4.MessageTypeAck, net.IPv4zero, testGuestMAC, lease, false}},
		{"release", request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(lease)), want{}},
		{"decline", request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(lease))), want{}},
		{"another client",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 0x99})),
			want{}},
		{"relayed",
			request(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithGatewayIP(net.IPv4(10, 0, 0, 1))),
			want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.UpdateOption(dhcpv4.OptClientIdentifier(clientID))
			r, err := respond(cfg, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.typ == 0 {
				if r.Msg != nil {
					t.Fatalf("answered %s; want no answer", r.Msg.MessageType())
				}
				if r.Note == "" {
					t.Error("no note saying why there is no answer")
				}
				return
			}
			if r.Msg == nil {
				t.Fatalf("no answer (%s); want %s", r.Note, tc.want.typ)
			}
			// Through the wire format, as the client sees it.
			m, err := dhcpv4.FromBytes(r.Msg.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			if m.MessageType() != tc.want.typ {
				t.Errorf("type %s, want %s", m.MessageType(), tc.want.typ)
			}
			if m.OpCode != dhcpv4.OpcodeBootReply || m.TransactionID != tc.req.TransactionID || !bytes.Equal(m.ClientHWAddr, testGuestMAC) {
				t.Errorf("reply header op=%s xid=%s chaddr=%s does not match the request", m.OpCode, m.TransactionID, m.ClientHWAddr)
			}
			if tc.want.yiaddr != nil && !m.YourIPAddr.Equal(tc.want.yiaddr) {
				t.Errorf("yiaddr %s, want %s", m.YourIPAddr, tc.want.yiaddr)
			}
			if !bytes.Equal(r.DstMAC, tc.want.dstMAC) || !r.DstIP.Equal(tc.want.dstIP) {
				t.Errorf("sent to %s/%s, want %s/%s", r.DstMAC, r.DstIP, tc.want.dstMAC, tc.want.dstIP)
			}
			if !m.ServerIdentifier().Equal(cfg.Lease.ServerID) {
				t.Errorf("server id %s, want %s", m.ServerIdentifier(), cfg.Lease.ServerID)
			}
			if got := m.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(got, clientID) {
				t.Errorf("client id %q not echoed (got %q)", clientID, got)
			}
			if got := m.Options.Has(dhcpv4.OptionIPAddressLeaseTime); got != tc.want.times {
				t.Errorf("lease time present=%v, want %v", got, tc.want.times)
			}
			if tc.want.typ == dhcpv4.MessageTypeNak {
				if m.Options.Has(dhcpv4.OptionSubnetMask) || m.Options.Has(dhcpv4.OptionRouter) {
					t.Errorf("NAK carries lease options: %s", m.Summary())
				}
				if m.Message() == "" {
					t.Error("NAK has no message")
				}
				return
			}
			checkLeaseOptions(t, m, &cfg.Lease)
		})
	}
}

// checkLeaseOptions checks the options that describe the lease.
func checkLeaseOptions(t *testing.T, m *dhcpv4.DHCPv4, l *Lease) {
	t.Helper()
	if got := m.SubnetMask(); got.String() != l.Mask.String() {
		t.Errorf("mask %v, want %v", got, l.Mask)
	}
	if got := m.Router(); len(got) != 1 || !got[0].Equal(l.Router) {
		t.Errorf("router (option 3) %v, want %v", got, l.Router)
	}
	if got := m.DNS(); len(got) != 1 || !got[0].Equal(l.DNS[0]) {
		t.Errorf("dns %v, want %v", got, l.DNS)
	}
	if got := m.DomainName(); got != l.Domain {
		t.Errorf("domain %q, want %q", got, l.Domain)
	}
	if got := m.Options.Get(dhcpv4.OptionInterfaceMTU); !bytes.Equal(got, []byte{byte(l.MTU >> 8), byte(l.MTU)}) {
		t.Errorf("mtu option %v, want %d", got, l.MTU)
	}
	var routes []string
	for _, r := range m.ClasslessStaticRoute() {
		routes = append(routes, r.Dest.String()+" via "+r.Router.String())
	}
	if got, want := strings.Join(routes, ", "), "169.254.0.1/32 via 0.0.0.0, 0.0.0.0/0 via 169.254.0.1"; got != want {
		t.Errorf("option 121 %q, want %q", got, want)
	}
	if m.MessageType() != dhcpv4.MessageTypeAck || m.YourIPAddr.IsUnspecified() {
		return
	}
	if got := m.IPAddressLeaseTime(0); got != l.LeaseTime {
		t.Errorf("lease time %s, want %s", got, l.LeaseTime)
	}
	if got := m.IPAddressRenewalTime(0); got != l.LeaseTime/2 {
		t.Errorf("T1 %s, want %s", got, l.LeaseTime/2)
	}
}

func TestNormalize(t *testing.T) {
	cfg := routedConfig()
	cfg.Lease.LeaseTime = 0
	n := normalized(t, cfg)
	if !n.Lease.ServerID.Equal(cfg.Lease.Router) {
		t.Errorf("server id defaults to %v, want the router %v", n.Lease.ServerID, cfg.Lease.Router)
	}
	if n.Lease.LeaseTime != defaultLeaseTime {
		t.Errorf("lease time defaults to %s, want %s", n.Lease.LeaseTime, defaultLeaseTime)
	}
	for name, mangle := range map[string]func(c *Config){
		"no link":        func(c *Config) { c.Link = "" },
		"no guest mac":   func(c *Config) { c.ClientMAC = nil },
		"ipv6 lease":     func(c *Config) { c.Lease.IP = net.ParseIP("fd00::2") },
		"no mask":        func(c *Config) { c.Lease.Mask = nil },
		"holey mask":     func(c *Config) { c.Lease.Mask = net.IPv4Mask(255, 0, 255, 0) },
		"no server id":   func(c *Config) { c.Lease.Router, c.Lease.ServerID = nil, nil },
		"ipv6 dns":       func(c *Config) { c.Lease.DNS = []net.IP{net.ParseIP("fd00::53")} },
		"route no dest":  func(c *Config) { c.Lease.Routes = []Route{{Router: net.IPv4zero}} },
		"tiny mtu":       func(c *Config) { c.Lease.MTU = 20 },
		"negative lease": func(c *Config) { c.Lease.LeaseTime = -time.Second },
	} {
		c := routedConfig()
		mangle(&c)
		if err := normalize(&c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: normalize = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestNewLinkNotFound(t *testing.T) {
	cfg := routedConfig()
	cfg.Link = "vmrt-absent-0"
	_, err := New(cfg)
	if !errors.Is(err, ErrLinkNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("New on a missing link: %v; want ErrLinkNotFound matching os.ErrNotExist", err)
	}
	if want := `dhcp responder on "vmrt-absent-0": link not found`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
