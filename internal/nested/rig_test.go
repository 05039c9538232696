package nested

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/testutil"
)

// TestRigBoot boots the rig with a trivial payload: files arrive with their
// modes, the environment is the rig's, the exit status comes back.
func TestRigBoot(t *testing.T) {
	src := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(src, []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Run(t, Payload{
		Files: []File{{Src: src, Dst: "/opt/x/hello", Mode: 0o600}},
		Script: `cat /opt/x/hello
echo "mode=$(stat -c %a /opt/x/hello) rig=$VMRUN_RIG pwd=$(pwd) kernel=$(uname -r)"
[ -d /run/netns ] && echo "netns dir ok"
exit 7
`,
		MemMiB:  512,
		Timeout: time.Minute,
	})
	if r.Status != 7 {
		t.Errorf("status %d, want 7", r.Status)
	}
	for _, want := range []string{"hello from the host", "mode=600 rig=1 pwd=/payload", "netns dir ok"} {
		if !strings.Contains(r.Output, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	t.Logf("boot to %q: %.1fs", markerUp, r.Boot.Seconds())
}

// wifiScript sets up a Wi-Fi LAN inside the rig and checks the kernel facts
// vmrun's network modes rest on (DESIGN.md, "ipvtap on Wi-Fi"): two
// mac80211_hwsim radios, an open AP (hostapd, dnsmasq) on phy of wlan0 in
// netns "ap" (192.168.77.1/24), a station (wpa_supplicant, udhcpc) on wlan1
// in the rig's main netns.
const wifiScript = ScriptHelpers + `
# --- the Wi-Fi LAN -----------------------------------------------------------
modprobe mac80211_hwsim radios=2 || { bad "modprobe mac80211_hwsim"; exit 1; }
wait_for 5 test -e /sys/class/net/wlan1 || { bad "no wlan1 after modprobe"; exit 1; }
ap_phy=$(cat /sys/class/net/wlan0/phy80211/name)
$IP netns add ap
iw phy "$ap_phy" set netns name ap || { bad "iw phy $ap_phy set netns name ap"; exit 1; }
$IP -n ap link set lo up
$IP -n ap addr add 192.168.77.1/24 dev wlan0
cat >/tmp/hostapd.conf <<'EOF'
interface=wlan0
driver=nl80211
ssid=vmrun-test
hw_mode=g
channel=1
EOF
t_ap=$(now)
$IP netns exec ap hostapd -t /tmp/hostapd.conf >/tmp/hostapd.log 2>&1 &
wait_for 20 grep -q AP-ENABLED /tmp/hostapd.log || { bad "hostapd"; dump /tmp/hostapd.log; exit 1; }
echo "hostapd: AP enabled after $(since "$t_ap") s"
$IP netns exec ap dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
	--port=0 --bind-interfaces --interface=wlan0 --except-interface=lo \
	--dhcp-range=192.168.77.100,192.168.77.150,255.255.255.0,10m \
	--dhcp-leasefile=/tmp/leases --dhcp-authoritative --no-ping --log-dhcp \
	--log-facility=/tmp/dnsmasq.log --user=root &

cat >/tmp/wpa.conf <<'EOF'
ctrl_interface=/run/wpa_supplicant
network={
	ssid="vmrun-test"
	key_mgmt=NONE
}
EOF
t_sta=$(now)
wpa_supplicant -i wlan1 -D nl80211 -c /tmp/wpa.conf -t >/tmp/wpa.log 2>&1 &
if wait_for 60 sh -c "iw dev wlan1 link | grep -q 'Connected to'"; then
	pass "station associated after $(since "$t_sta") s (hostapd started $(since "$t_ap") s ago)"
else
	bad "station did not associate"; dump /tmp/hostapd.log /tmp/wpa.log; exit 1
fi
iw dev wlan1 link
iw dev wlan1 info | grep -E 'type|addr'
wpa_cli -i wlan1 status | grep -E '^(wpa_state|ssid|mode)='
sta_mac=$(cat /sys/class/net/wlan1/address)

udhcpc -i wlan1 -n -q -t 10 -T 1 || bad "udhcpc on wlan1"
$IP -4 addr show dev wlan1 | grep -q 'inet 192.168.77.' && pass "station got a DHCP lease" || bad "no lease on wlan1"
$IP route show default | grep -q 'via 192.168.77.1 dev wlan1' && pass "default route via the AP" || bad "no default route via 192.168.77.1"
$IP route
ping -c 2 -w 10 192.168.77.1 >/dev/null && pass "station pings the AP" || bad "station cannot ping the AP"

# --- (a) a station cannot be enslaved to a bridge ----------------------------
$IP link add br0 type bridge
out=$(brctl addif br0 wlan1 2>&1) # ioctl: strerror of the kernel's errno
case $out in
*"Operation not supported"*) pass "bridge: enslaving the station fails with EOPNOTSUPP ($out)" ;;
*) bad "bridge: brctl addif br0 wlan1: '$out'" ;;
esac
echo "iproute2: $($IP link set wlan1 master br0 2>&1)"
$IP link del br0

# --- (c) a macvlan on the station cannot reach the AP -------------------------
$IP netns add mvns
$IP -n mvns link set lo up
$IP link add mv0 link wlan1 type macvlan mode bridge
$IP link set mv0 netns mvns
$IP -n mvns addr add 192.168.77.61/24 dev mv0
$IP -n mvns link set mv0 up
mv_mac=$($IP netns exec mvns cat /sys/class/net/mv0/address)
if $IP netns exec mvns ping -c 1 -w 3 192.168.77.1 >/dev/null; then
	bad "macvlan (MAC $mv_mac) reached the AP"
elif [ -n "$($IP -n ap neigh show 192.168.77.61)" ]; then
	bad "macvlan: no ping reply, yet the AP learnt 192.168.77.61: $($IP -n ap neigh show 192.168.77.61)"
else
	pass "macvlan: the AP drops the foreign MAC $mv_mac (no reply, no ARP entry on the AP)"
fi
$IP -n mvns link del mv0
$IP netns del mvns

# --- (b) ipvlan L2 on the station reaches the AP ------------------------------
[ -d /sys/module/ipvlan ] && bad "ipvlan loaded before modprobe"
modprobe ipvlan && modprobe ipvtap || bad "modprobe ipvlan ipvtap"
$IP netns add ipns
$IP -n ipns link set lo up
$IP link add ipv0 link wlan1 type ipvlan mode l2 bridge
$IP link set ipv0 netns ipns
$IP -n ipns addr add 192.168.77.60/24 dev ipv0
$IP -n ipns link set ipv0 up
if $IP netns exec ipns ping -c 2 -w 10 192.168.77.1 >/dev/null; then
	pass "ipvlan L2 in its own netns pings the AP"
else
	bad "ipvlan L2 cannot ping the AP"
fi
neigh=$($IP -n ap neigh show 192.168.77.60)
case $neigh in
*"lladdr $sta_mac"*) pass "the AP sees 192.168.77.60 at the station's MAC ($neigh)" ;;
*) bad "AP's neighbour entry for 192.168.77.60: '$neigh', station MAC $sta_mac" ;;
esac

# ipvtap: L2 with the bridge flag gives a tap char device; without "mode" it
# is L3, and the last slave created sets the mode of the whole port.
$IP link add ipvt0 link wlan1 type ipvtap mode l2 bridge
idx=$(cat /sys/class/net/ipvt0/ifindex)
[ -c "/dev/tap$idx" ] && pass "ipvtap: /dev/tap$idx exists ($(cat /sys/class/net/ipvt0/ipvtap/tap"$idx"/dev))" || bad "ipvtap: no /dev/tap$idx"
$IP -d link show ipvt0 | grep -q 'ipvtap  *mode l2 bridge' && pass "ipvtap: mode l2 bridge" || bad "ipvtap: mode: $($IP -d link show ipvt0)"
$IP link add ipvt1 link wlan1 type ipvtap
$IP -d link show ipvt0 | grep -q 'ipvtap  *mode l3 ' && pass "ipvtap: a slave added without mode is L3 and switches the port (ipvt0 is L3 now)" ||
	bad "ipvtap: after adding ipvt1 without mode: $($IP -d link show ipvt0)"
$IP link del ipvt1
$IP link set ipvt0 type ipvtap mode l2 bridge
$IP link del ipvt0

# --- the same facts by errno, from Go -----------------------------------------
# Strict: a skip fails; and the test must have run (not merely exited 0).
if VMRUN_STRICT=1 /payload/nested.test -test.run '^TestInRig$' -test.v >/tmp/inrig.log 2>&1 && grep -q '^--- PASS: TestInRig ' /tmp/inrig.log; then
	pass "Go test in the rig (TestInRig passed, strict)"
else
	bad "Go test in the rig"
fi
cat /tmp/inrig.log

# --- (d) vhost-net -----------------------------------------------------------
[ -e /dev/vhost-net ] && bad "/dev/vhost-net exists before modprobe"
modprobe vhost_net || bad "modprobe vhost_net"
wait_for 2 test -c /dev/vhost-net && pass "/dev/vhost-net exists after modprobe vhost_net" || bad "no /dev/vhost-net"

[ $failed = 0 ] || dump /tmp/hostapd.log /tmp/wpa.log /tmp/dnsmasq.log
exit $failed
`

// TestWiFiRig proves the rig: a Wi-Fi AP and station on mac80211_hwsim, and
// the kernel facts of DESIGN.md (bridge EOPNOTSUPP, ipvlan L2 reaches the
// AP, macvlan does not, vhost-net) checked on a real 802.11 station link.
func TestWiFiRig(t *testing.T) {
	Require(t)
	start := time.Now()
	bin := BuildTest(t, ".")
	t.Logf("go test -c: %.1fs", time.Since(start).Seconds())
	r := Run(t, Payload{
		Files:   []File{{Src: bin, Dst: "/payload/nested.test"}},
		Script:  wifiScript,
		Timeout: 4 * time.Minute,
	})
	for _, l := range strings.Split(r.Output, "\n") {
		if strings.HasPrefix(l, "PASS: ") || strings.HasPrefix(l, "FAIL: ") {
			t.Log(l)
		}
	}
	if strings.Contains(r.Output, "FAIL: ") || r.Status != 0 {
		t.Errorf("the Wi-Fi rig reported failures (run.sh exit %d)", r.Status)
	}
	if m := r.Match(`station associated after ([0-9.]+) s`); m != nil {
		t.Logf("association: %s s after wpa_supplicant started", m[1])
	}
	t.Logf("whole test %.1fs (boot %.1fs, rig run %.1fs)", time.Since(start).Seconds(), r.Boot.Seconds(), r.Elapsed.Seconds())
}

// TestInRig runs inside the rig only (TestWiFiRig starts it after wlan1 is
// an associated station) and checks the errno of two kernel refusals, as
// vmrun's netlink code sees them.
func TestInRig(t *testing.T) {
	if !Inside() {
		testutil.SkipElsewhere(t, "internal/nested.TestWiFiRig", "runs inside the nested rig")
	}
	sta, err := netlink.LinkByName("wlan1")
	if err != nil {
		t.Fatal(err)
	}

	br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	br.Name = "gobr0"
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	defer netlink.LinkDel(br)
	if err := netlink.LinkSetMaster(sta, br); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("enslaving the station to a bridge: %v, want EOPNOTSUPP", err)
	} else {
		t.Logf("bridge: %v", err)
	}

	ipv := &netlink.IPVlan{LinkAttrs: netlink.NewLinkAttrs(), Mode: netlink.IPVLAN_MODE_L2, Flag: netlink.IPVLAN_FLAG_BRIDGE}
	ipv.Name, ipv.ParentIndex = "goipv0", sta.Attrs().Index
	if err := netlink.LinkAdd(ipv); err != nil {
		t.Fatalf("ipvlan on the station: %v", err)
	}
	defer netlink.LinkDel(ipv)
	mv := &netlink.Macvlan{LinkAttrs: netlink.NewLinkAttrs(), Mode: netlink.MACVLAN_MODE_BRIDGE}
	mv.Name, mv.ParentIndex = "gomv0", sta.Attrs().Index
	err = netlink.LinkAdd(mv)
	if err == nil {
		netlink.LinkDel(mv)
	}
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("macvlan next to an ipvlan on the station: %v, want EBUSY", err)
	} else {
		t.Logf("macvlan next to ipvlan: %v", err)
	}
}

// TestInnerQEMU boots the test guest's initramfs (test/guest) with the
// rig's bare QEMU, TCG inside TCG: a quick look at the rig's QEMU when
// test/wifi's inner VMs fail. It takes 1.5-3 minutes and runs only with
// VMRUN_NESTED_INNER=1: CI covers it with test/wifi's TestWiFi, which boots
// the test guest's disk with vmrun inside the rig (twice, and checks each
// guest's lease, reachability and web page).
func TestInnerQEMU(t *testing.T) {
	if os.Getenv("VMRUN_NESTED_INNER") != "1" {
		testutil.SkipElsewhere(t, "test/wifi.TestWiFi", "a diagnostic for the rig's QEMU, opt-in with VMRUN_NESTED_INNER=1 (1.5-3 min)")
	}
	rig := Require(t)
	g := testutil.RequireGuest(t)
	r := Run(t, Payload{
		Files: []File{
			// The rig's vmlinux is the guest's kernel, uncompressed: under
			// TCG inside TCG, xz-decompressing vmlinuz alone takes a minute.
			{Src: rig.Kernel, Dst: "/payload/guest/vmlinux"},
			{Src: g.Initrd, Dst: "/payload/guest/initrd.img"},
		},
		Script: `
t0=$(cut -d' ' -f1 /proc/uptime)
qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 256 -nodefaults -no-user-config \
	-display none -serial stdio -no-reboot -kernel /payload/guest/vmlinux \
	-initrd /payload/guest/initrd.img -append "console=ttyS0 quiet panic=-1 vmrun.role=demo" </dev/null
status=$?
echo "INNER: qemu exited $status after $(awk -v a=$t0 -v b=$(cut -d' ' -f1 /proc/uptime) 'BEGIN { print b - a }') s"
exit $status
`,
		Timeout: 8 * time.Minute,
	})
	if r.Status != 0 || !strings.Contains(r.Output, "VMRUN-GUEST: demo done") {
		t.Errorf("inner guest did not finish (run.sh exit %d)", r.Status)
	}
	if m := r.Match(`INNER: qemu exited \d+ after ([0-9.]+) s`); m != nil {
		t.Logf("inner QEMU: %s s from start to power-off", m[1])
	}
}
