package e2e

import (
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// routedHostState is what --net routed may change in the host namespace:
// the uplink's sysctls (and some it must leave alone), links, addresses,
// routes and proxy entries.
func routedHostState(t *testing.T, l *lan) map[string]string {
	t.Helper()
	st := map[string]string{}
	for _, s := range []string{
		"net/ipv4/conf/up0/forwarding", "net/ipv4/neigh/up0/proxy_delay", "net/ipv4/conf/up0/proxy_arp",
		"net/ipv4/conf/all/forwarding", "net/ipv4/ip_forward", "net/ipv6/conf/up0/proxy_ndp", "net/ipv6/conf/all/forwarding",
		"net/ipv6/conf/up0/accept_ra", "net/ipv6/conf/up0/forwarding", "net/ipv6/neigh/up0/proxy_delay",
	} {
		st[s] = strings.TrimSpace(l.Host.MustRun(t, "cat", "/proc/sys/"+s))
	}
	st["links"] = strings.Join(snapshotLinks(t, l.Host), " ")
	st["addrs"] = l.Host.MustRun(t, "ip", "-o", "addr", "show")
	st["routes4"] = l.Host.MustRun(t, "ip", "-4", "route", "show", "table", "all")
	st["routes6"] = l.Host.MustRun(t, "ip", "-6", "route", "show", "table", "all")
	st["proxy"] = l.Host.MustRun(t, "ip", "neigh", "show", "proxy")
	return st
}

// waitNoTentative waits until IPv6 duplicate address detection is over on
// the host's links (a link-local address enters the routing table only
// then, which would look like a change).
func waitNoTentative(t *testing.T, l *lan) {
	t.Helper()
	// The bound only ends a wait for something that is not coming (DAD
	// takes about a second).
	l.Host.WaitNoTentative(t, "", 2*time.Minute)
}

// TestRoutedEndToEnd boots the test disk with --net routed in a host
// namespace whose uplink is a veth to a LAN namespace running dnsmasq:
// with an address given (--guest-ip, outside dnsmasq's range) and with one
// vmrun leases upstream for the guest. The guest must get ADDR/32 with
// gateway 169.254.0.1 from vmrun's responder; the LAN pings it and fetches
// its web page; SIGTERM ends vmrun with 0, and the host is exactly as
// before (links, addresses, routes, proxy entries, sysctls) with an empty
// runtime directory.
func TestRoutedEndToEnd(t *testing.T) {
	g := requireQEMUTests(t)
	for _, tc := range []struct {
		name   string
		args   []string
		wantIP func(ip net.IP) bool
		notice string
	}{
		{name: "guest-ip", args: []string{"--guest-ip", "10.77.0.60/24"},
			wantIP: func(ip net.IP) bool { return ip.Equal(net.ParseIP("10.77.0.60")) },
			notice: "routed: the guest gets 10.77.0.60 (--guest-ip"},
		{name: "leased",
			wantIP: func(ip net.IP) bool {
				ip4 := ip.To4()
				return ip4 != nil && ip4[2] == 0 && ip4[3] >= 100 && ip4[3] <= 150
			},
			notice: "(leased from 10.77.0.1 with client-id vmrun-e2e-routed-leased"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLAN(t, false)
			waitNoTentative(t, l)
			before := routedHostState(t, l)
			start := time.Now()
			args := append([]string{"--disk", g.Test, "--snapshot", "--net", "routed", "--console", "serial", "--name", "e2e-routed-" + tc.name}, tc.args...)
			vm := Start(t, l.Host, "", args...)
			m := vm.WaitConsole(`VMRUN-GUEST-IP=(\S+) GW=(\S+)`, bootTimeout)
			ip, n, err := net.ParseCIDR(m[1])
			if err != nil || !tc.wantIP(ip) || n.Mask.String() != "ffffffff" || m[2] != "169.254.0.1" {
				t.Fatalf("guest marker %q: want the guest's address/32 with GW=169.254.0.1", m[0])
			}
			if !strings.Contains(vm.Stderr.String(), tc.notice) {
				t.Errorf("stderr does not say %q:\n%s", tc.notice, vm.Stderr)
			}
			// vmrun learns it from its own DHCP responder; a leased one is
			// the LAN dnsmasq's lease.
			checkLearnt(t, l.Host, vm, "e2e-routed-"+tc.name, ip.String(), "dhcp", "169.254.0.1", "DHCP from 169.254.0.1)")
			if tc.name == "leased" && !leased(t, l.DHCP, ip.String()) {
				t.Errorf("the LAN's dnsmasq holds no lease of the guest's %s", ip)
			}
			vm.WaitConsole(`VMRUN-GUEST: ready`, stepTimeout)
			ping(t, l.LAN, ip.String())
			if body := httpGet(t, l.LAN, ip.String()+":80"); !strings.Contains(body, "vmrun-guest-ok") {
				t.Fatalf("guest TCP port answered %q", body)
			}
			if out := l.LAN.MustRun(t, "ip", "neigh", "show", ip.String()); !strings.Contains(out, hostMAC(t, l)) {
				t.Errorf("the LAN does not see the guest at the host's MAC %s:\n%s", hostMAC(t, l), out)
			}
			during := routedHostState(t, l)
			if during["proxy"] == before["proxy"] || during["net/ipv4/conf/up0/forwarding"] != "1" || during["net/ipv4/neigh/up0/proxy_delay"] != "0" {
				t.Errorf("while running: proxy %q, forwarding %s, proxy_delay %s", during["proxy"], during["net/ipv4/conf/up0/forwarding"], during["net/ipv4/neigh/up0/proxy_delay"])
			}
			if during["net/ipv4/conf/all/forwarding"] != before["net/ipv4/conf/all/forwarding"] {
				t.Errorf("routed mode changed net/ipv4/conf/all/forwarding")
			}
			vm.Signal(syscall.SIGTERM)
			if code := vm.Wait(exitTimeout); code != 0 {
				t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, vm.Stderr)
			}
			t.Logf("%s: boot to exit %s; vmrun's stderr:\n%s", tc.name, time.Since(start).Round(100*time.Millisecond), vm.Stderr)
			if after := routedHostState(t, l); !reflect.DeepEqual(after, before) {
				for k := range before {
					if after[k] != before[k] {
						t.Errorf("after exit %s is\n%s\nwas\n%s", k, after[k], before[k])
					}
				}
			}
			assertEmptyDir(t, vm.Runtime)
		})
	}
}

// hostMAC is the MAC of the host's uplink.
func hostMAC(t *testing.T, l *lan) string {
	t.Helper()
	return strings.TrimSpace(l.Host.MustRun(t, "cat", "/sys/class/net/up0/address"))
}

// TestRoutedGCAfterKill: vmrun with a routed guest is SIGKILLed (QEMU, in
// its own process group, lives on); `vmrun gc` must kill that QEMU and
// restore the host exactly: proxy entry, route, sysctls, links. (The
// upstream lease is not released: it expires at the DHCP server.)
func TestRoutedGCAfterKill(t *testing.T) {
	g := requireQEMUTests(t)
	l := newLAN(t, false)
	waitNoTentative(t, l)
	before := routedHostState(t, l)
	vm := Start(t, l.Host, "", "--disk", g.Test, "--snapshot", "--net", "routed", "--console", "serial", "--name", "e2e-routed-kill")
	ip := vm.GuestIP(bootTimeout)
	vm.WaitConsole(`VMRUN-GUEST: ready`, stepTimeout)
	ping(t, l.LAN, ip)
	if during := routedHostState(t, l); during["proxy"] == before["proxy"] || during["net/ipv4/conf/up0/forwarding"] != "1" {
		t.Fatalf("routed state not in place: %q", during)
	}
	if err := syscall.Kill(vm.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	vm.Wait(exitTimeout)
	out, errOut, code := RunVMRun(t, l.Host, vm.Runtime, "gc")
	if code != 0 || !strings.Contains(out, `removed the leftovers of VM "e2e-routed-kill"`) {
		t.Fatalf("vmrun gc: exit %d\n%s%s", code, out, errOut)
	}
	if after := routedHostState(t, l); !reflect.DeepEqual(after, before) {
		for k := range before {
			if after[k] != before[k] {
				t.Errorf("after gc %s is\n%s\nwas\n%s", k, after[k], before[k])
			}
		}
	}
	assertEmptyDir(t, vm.Runtime)
}

// TestRoutedIPv6: the uplink has a global /64 (here a ULA, fd78::/64, as
// the LAN namespace's router would give it) and IPv6 forwarding is off.
// vmrun advertises the prefix on the tap, the guest takes an address by
// SLAAC (random interface id), vmrun learns it, routes it and answers NDP
// for it on the uplink: the LAN pings the guest's IPv6 address. While the
// VM runs the uplink's accept_ra is 2 (the host keeps its own router
// advertisements), forwarding and proxy_ndp are on; afterwards all is as
// before: after SIGTERM, and after SIGKILL and `vmrun gc`.
func TestRoutedIPv6(t *testing.T) {
	g := requireQEMUTests(t)
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "sigterm", true: "sigkill+gc"}[kill], func(t *testing.T) {
			routedIPv6(t, g.Test, kill)
		})
	}
}

func routedIPv6(t *testing.T, disk string, kill bool) {
	l := newLAN(t, false)
	l.LAN.MustRun(t, "ip", "-6", "addr", "add", "fd78::1/64", "dev", "lan0", "nodad")
	l.Host.MustRun(t, "ip", "-6", "addr", "add", "fd78::2/64", "dev", "up0", "nodad")
	l.Host.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd78::1", "dev", "up0")
	l.Host.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=1", "net.ipv6.conf.all.forwarding=0")
	waitNoTentative(t, l)
	before := routedHostState(t, l)
	name := "e2e-routed-v6" + map[bool]string{false: "", true: "-kill"}[kill]
	vm := Start(t, l.Host, "", "--disk", disk, "--snapshot", "--net", "routed", "--console", "serial",
		"--name", name, "--guest-ip", "10.77.0.62/24")
	vm.WaitConsole(`VMRUN-GUEST: ready`, bootTimeout)
	m, err := vm.Stderr.WaitFor(`routed: the guest's IPv6 address (fd78:\S+) is routed to it`, stepTimeout)
	if err != nil {
		t.Fatalf("vmrun did not route an IPv6 address of the guest in fd78::/64 within %s\n%s", stepTimeout, vm.lastLines())
	}
	addr := m[1]
	if err := l.LAN.Ping(addr, 20*time.Second); err != nil {
		t.Fatalf("the LAN cannot reach the guest's IPv6 address: %v\nstderr:\n%s", err, vm.Stderr)
	}
	if err := l.Host.Ping(addr, 10*time.Second); err != nil {
		t.Errorf("the host cannot reach the guest's IPv6 address: %v", err)
	}
	during := routedHostState(t, l)
	for k, want := range map[string]string{"net/ipv6/conf/up0/accept_ra": "2", "net/ipv6/conf/all/forwarding": "1",
		"net/ipv6/conf/up0/proxy_ndp": "1", "net/ipv6/neigh/up0/proxy_delay": "0"} {
		if during[k] != want {
			t.Errorf("while running %s = %s, want %s", k, during[k], want)
		}
	}
	if !strings.Contains(during["proxy"], addr) || !strings.Contains(during["routes6"], addr) {
		t.Errorf("no proxy entry or /128 route for %s:\n%s\n%s", addr, during["proxy"], during["routes6"])
	}
	if !strings.Contains(during["routes6"], "default via fd78::1") {
		t.Errorf("the host lost its IPv6 default route:\n%s", during["routes6"])
	}
	if kill {
		if err := syscall.Kill(vm.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		vm.Wait(exitTimeout)
		out, errOut, code := RunVMRun(t, l.Host, vm.Runtime, "gc")
		if code != 0 || !strings.Contains(out, `removed the leftovers of VM "`+name+`"`) {
			t.Fatalf("vmrun gc: exit %d\n%s%s", code, out, errOut)
		}
	} else {
		vm.Signal(syscall.SIGTERM)
		if code := vm.Wait(exitTimeout); code != 0 {
			t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, vm.Stderr)
		}
	}
	assertRoutedHostUnchanged(t, l, before)
	assertEmptyDir(t, vm.Runtime)
}

// assertRoutedHostUnchanged fails, naming each difference, unless the host
// namespace's routed state (routedHostState) is what it was before.
func assertRoutedHostUnchanged(t *testing.T, l *lan, before map[string]string) {
	t.Helper()
	after := routedHostState(t, l)
	for k := range before {
		if after[k] != before[k] {
			t.Errorf("after exit %s is\n%s\nwas\n%s", k, after[k], before[k])
		}
	}
}
