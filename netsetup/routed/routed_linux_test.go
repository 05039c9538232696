package routed

import (
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/dhcpserve"
	"github.com/vmrun/vmrun/internal/dhcpupstream"
)

func TestRoutedLease(t *testing.T) {
	gw := net.IPv4(169, 254, 0, 1).To4()
	dns := []net.IP{net.IPv4(10, 77, 0, 1).To4()}
	up := &dhcpupstream.Lease{IP: net.IPv4(10, 77, 0, 123), Mask: net.CIDRMask(24, 32), Router: net.IPv4(10, 77, 0, 1),
		Domain: "lan.example", LeaseTime: 10 * time.Minute}
	l := routedLease(net.IPv4(10, 77, 0, 123), up, dns, 1500)
	want := dhcpserve.Lease{
		IP: net.IPv4(10, 77, 0, 123).To4(), Mask: net.CIDRMask(32, 32), Router: gw, ServerID: gw, DNS: dns,
		Routes: []dhcpserve.Route{
			{Dest: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Router: net.IPv4zero.To4()},
			{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: gw},
		},
		LeaseTime: 5 * time.Minute, Domain: "lan.example",
	}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("lease\n got %+v\nwant %+v", l, want)
	}
	// Option 121 as the guest reads it: host route to the gateway first.
	if got := routesString(l.Routes); got != "169.254.0.1/32 via 0.0.0.0, 0.0.0.0/0 via 169.254.0.1" {
		t.Errorf("routes %s", got)
	}
	static := routedLease(net.ParseIP("10.77.0.60"), nil, nil, 9000)
	if static.LeaseTime != time.Hour || static.MTU != 9000 || static.Domain != "" || static.DNS != nil || len(static.IP) != 4 {
		t.Errorf("static lease %+v", static)
	}
}

func routesString(rs []dhcpserve.Route) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Dest.String()+" via "+r.Router.String())
	}
	return strings.Join(s, ", ")
}

func TestGuestLeaseTime(t *testing.T) {
	for up, want := range map[time.Duration]time.Duration{
		0:                 time.Hour, // static address
		2 * time.Minute:   time.Minute,
		10 * time.Minute:  5 * time.Minute,
		90 * time.Minute:  45 * time.Minute,
		24 * time.Hour:    time.Hour,
		4 * time.Second:   10 * time.Second,
		100 * time.Second: 50 * time.Second,
	} {
		var l *dhcpupstream.Lease
		if up > 0 {
			l = &dhcpupstream.Lease{LeaseTime: up}
		}
		if got := guestLeaseTime(l); got != want {
			t.Errorf("upstream %s: guest lease %s, want %s", up, got, want)
		}
	}
}

func TestRoutedDNS(t *testing.T) {
	ips := func(ss ...string) []net.IP {
		var out []net.IP
		for _, s := range ss {
			out = append(out, net.ParseIP(s).To4())
		}
		return out
	}
	tests := []struct {
		name   string
		leased []net.IP
		conf   string
		want   []net.IP
		note   string // substring; "" means none
	}{
		{name: "from the lease", leased: ips("10.77.0.1", "10.77.0.3"), conf: "nameserver 10.9.9.9\n", want: ips("10.77.0.1", "10.77.0.3")},
		{name: "from resolv.conf", conf: "# comment\nsearch example\nnameserver 10.9.9.9\nnameserver fd00::53\nnameserver 127.0.0.1\noptions edns0\n", want: ips("10.9.9.9")},
		{name: "lease with a loopback server only falls back", leased: []net.IP{net.ParseIP("127.0.0.1")}, conf: "nameserver 10.9.9.9", want: ips("10.9.9.9")},
		{name: "systemd-resolved stub", conf: "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
			note: "routed: this host's only DNS resolver is 127.0.0.53, a local stub the guest cannot reach, so vmrun hands the guest no DNS server; configure one inside the guest"},
		{name: "nothing", conf: "", note: "neither the upstream lease nor /etc/resolv.conf names a DNS server"},
		{name: "IPv6 only", conf: "nameserver 2001:db8::53\n", note: "names a DNS server"},
		{name: "garbage", conf: "nameserver\nnameserver not-an-ip\nnameserver10.0.0.1\n", note: "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, note := routedDNS(tt.leased, tt.conf)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("servers %v, want %v", got, tt.want)
			}
			if tt.note == "" && note != "" || !strings.Contains(note, tt.note) {
				t.Errorf("note %q, want %q", note, tt.note)
			}
		})
	}
}

func TestRoutedSysctls(t *testing.T) {
	got := routedSysctls("wlan0", "vmr12345678t")
	var s []string
	for _, sc := range got {
		s = append(s, sc.Path+"="+sc.Value+map[bool]string{true: " shared", false: ""}[sc.Shared])
	}
	want := "net/ipv4/conf/wlan0/forwarding=1 shared, net/ipv4/neigh/wlan0/proxy_delay=0 shared, net/ipv4/conf/vmr12345678t/forwarding=1"
	if strings.Join(s, ", ") != want {
		t.Errorf("sysctls\n got %s\nwant %s", strings.Join(s, ", "), want)
	}
}
