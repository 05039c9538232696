package routed

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/ethernet"
	"github.com/vmrun/vmrun/netsetup/internal/hostnet"
	"github.com/vmrun/vmrun/netsetup/internal/learn"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
)

func TestRoutedSysctls6(t *testing.T) {
	show := func(list []hostnet.Sysctl) string {
		var s []string
		for _, sc := range list {
			s = append(s, sc.Path+"="+sc.Value)
		}
		return strings.Join(s, ", ")
	}
	const common = "net/ipv6/conf/all/forwarding=1, net/ipv6/conf/wlan0/proxy_ndp=1, net/ipv6/neigh/wlan0/proxy_delay=0"
	for acceptRA, want := range map[string]string{
		"1": "net/ipv6/conf/wlan0/accept_ra=2, " + common, // forwarding would stop the host's own SLAAC
		"0": common, "2": common,
	} {
		if got := show(routedSysctls6("wlan0", acceptRA)); got != want {
			t.Errorf("accept_ra %s:\n got %s\nwant %s", acceptRA, got, want)
		}
	}
	for _, sc := range routedSysctls6("wlan0", "1") {
		if !sc.Shared {
			t.Errorf("%s is not shared by the uplink's routed guests", sc.Path)
		}
	}
}

// ipv6Frame is an Ethernet frame from mac carrying an IPv6 packet with
// next header next and payload.
func ipv6Frame(t *testing.T, mac net.HardwareAddr, src, dst string, next int, payload []byte) []byte {
	t.Helper()
	h := make([]byte, ipv6.HeaderLen)
	h[0] = 6 << 4
	h[4], h[5] = byte(len(payload)>>8), byte(len(payload))
	h[6], h[7] = byte(next), 255
	copy(h[8:24], netip.MustParseAddr(src).AsSlice())
	copy(h[24:40], netip.MustParseAddr(dst).AsSlice())
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeIPv6, Payload: append(h, payload...)}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestICMP6Filter(t *testing.T) {
	vm, err := bpf.NewVM(icmp6Filter())
	if err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	ns := append([]byte{learn.ICMPv6NS, 0, 0, 0, 0, 0, 0, 0}, netip.MustParseAddr("fd78::1234").AsSlice()...)
	for name, tc := range map[string]struct {
		frame []byte
		pass  bool
	}{
		"DAD probe": {ipv6Frame(t, mac, "::", "ff02::1:ff00:1234", learn.IPv6ICMP, ns), true},
		"TCP":       {ipv6Frame(t, mac, "fd78::1234", "fd78::1", 6, make([]byte, 20)), false},
		"UDP":       {ipv6Frame(t, mac, "fd78::1234", "fd78::1", 17, make([]byte, 8)), false},
	} {
		n, err := vm.Run(tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		if (n > 0) != tc.pass {
			t.Errorf("%s: filter kept %d bytes, want pass=%v", name, n, tc.pass)
		}
		if tc.pass {
			ev, ok := learn.GuestAddrEvent(tc.frame[:min(n, len(tc.frame))], mac)
			if !ok || ev.Addr != netip.MustParseAddr("fd78::1234") {
				t.Errorf("%s: learnt %v %v from the filtered frame", name, ev, ok)
			}
		}
	}
}

func TestRouted6Prefixes(t *testing.T) {
	v := &routed6{prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParsePrefix("fd78::/64")}}
	for a, want := range map[string]bool{"2001:db8:1::5": true, "fd78::abcd": true, "2001:db8:2::5": false, "fe80::1": false} {
		if got := v.inPrefixes(netip.MustParseAddr(a)); got != want {
			t.Errorf("inPrefixes(%s) = %v, want %v", a, got, want)
		}
	}
}

func TestHostRoute(t *testing.T) {
	for ip, want := range map[string]string{"10.77.0.5": "10.77.0.5/32", "fd78::5": "fd78::5/128"} {
		if got := hostRoute(net.ParseIP(ip)).String(); got != want {
			t.Errorf("hostRoute(%s) = %s, want %s", ip, got, want)
		}
	}
}
