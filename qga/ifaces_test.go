package qga

import (
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestInterfaces: an answer of qemu-ga's guest-network-get-interfaces
// (its fields as the real agent writes them) decodes, and Usable keeps the
// addresses a host can reach the guest on.
func TestInterfaces(t *testing.T) {
	path := fakeAgent(t, map[string]string{
		"guest-network-get-interfaces": `{"return": [` +
			`{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},` +
			` {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}], "statistics": {"rx-bytes": 0}, "hardware-address": "00:00:00:00:00:00"},` +
			`{"name": "eth0", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "192.168.1.57", "prefix": 24},` +
			` {"ip-address-type": "ipv6", "ip-address": "2001:db8::57", "prefix": 64},` +
			` {"ip-address-type": "ipv6", "ip-address": "fe80::5054:ff:fe12:3456", "prefix": 64}], "hardware-address": "52:54:00:12:34:56"},` +
			`{"name": "eth1", "hardware-address": "52:54:00:12:34:57"}]}`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := WaitAgent(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ifs, err := c.Interfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 3 || ifs[1].Name != "eth0" || ifs[1].MAC != "52:54:00:12:34:56" || len(ifs[1].Addrs) != 3 ||
		ifs[1].Addrs[0] != netip.MustParsePrefix("192.168.1.57/24") || len(ifs[2].Addrs) != 0 {
		t.Fatalf("interfaces %+v", ifs)
	}
	want := []netip.Addr{netip.MustParseAddr("192.168.1.57"), netip.MustParseAddr("2001:db8::57")}
	if got := Usable(ifs); !reflect.DeepEqual(got, want) {
		t.Fatalf("Usable: %v, want %v", got, want)
	}
}
