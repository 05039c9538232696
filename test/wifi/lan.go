// Package wifi runs vmrun's Wi-Fi path for real inside the nested-kernel rig
// (internal/nested): a mac80211_hwsim access point and station, with ipvtap
// and vhost-net loaded by the tests. The tests are in wifi_test.go; this
// file holds the shell that builds the Wi-Fi LAN inside the rig.
package wifi

import "github.com/vmrun/vmrun/internal/nested"

// stockVMs are the names of TestWiFiStockGuests' VMs, whose upstream
// leases at the AP are short (lanScript's /tmp/ap-hosts).
const stockVMs = "stockvm dhclvm"

// lanScript is the start of every payload script: helpers, then a Wi-Fi LAN
// inside the rig, as internal/nested's TestWiFiRig proved it works. Two
// mac80211_hwsim radios ($hwsim_radios in all: wlan2, ... for the script
// that follows; with $ap_bridge, the AP's LAN is a bridge br0 in "ap"
// with wlan0 as a port, for more access points, and 4-address stations
// get a port of their own, hostapd's wds_sta): wlan0 is an open access point (hostapd, dnsmasq:
// 192.168.77.1/24, leases .100-.150 for 10 minutes, the station's for an
// hour, those of stockVMs for 8 minutes, renewed at 1) in namespace "ap"; wlan1 is a station
// (wpa_supplicant, udhcpc) in the rig's own namespace, its default route
// via the access point. The rig's namespace is also named "rigmain" (ip
// netns attach), for Go tests that want it as a named namespace.
const lanScript = nested.ScriptHelpers + `
links() { $IP -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort | tr '\n' ' '; }

modprobe mac80211_hwsim radios=${hwsim_radios:-2} || { bad "modprobe mac80211_hwsim"; exit 1; }
wait_for 5 test -e /sys/class/net/wlan1 || { bad "no wlan1 after modprobe"; exit 1; }
ap_phy=$(cat /sys/class/net/wlan0/phy80211/name)
$IP netns add ap
iw phy "$ap_phy" set netns name ap || { bad "iw phy $ap_phy set netns name ap"; exit 1; }
$IP -n ap link set lo up
# With $ap_bridge set, the LAN is a bridge br0 in "ap" whose ports are the
# access points (hostapd adds each): more than one AP on one LAN.
lan_if=wlan0
if [ -n "${ap_bridge:-}" ]; then
	# A MAC of its own: the gateway's MAC stays when ports come and go.
	$IP -n ap link add br0 address 02:77:00:00:00:01 type bridge && $IP -n ap link set br0 up || { bad "bridge br0 in ap"; exit 1; }
	lan_if=br0
fi
$IP -n ap addr add 192.168.77.1/24 dev $lan_if
printf 'interface=wlan0\ndriver=nl80211\nssid=vmrun-test\nhw_mode=g\nchannel=1\n' >/tmp/hostapd.conf
[ -n "${ap_bridge:-}" ] && printf 'bridge=br0\nwds_sta=1\n' >>/tmp/hostapd.conf
$IP netns exec ap hostapd -t /tmp/hostapd.conf >/tmp/hostapd.log 2>&1 &
wait_for 20 grep -q AP-ENABLED /tmp/hostapd.log || { bad "hostapd"; dump /tmp/hostapd.log; exit 1; }
# The station's lease (busybox udhcpc sends 01 and its MAC as client
# identifier, dnsmasq's id:) lasts the whole run: its udhcpc -q does not
# renew, and once a 10-minute lease ran out (a rig beside e2e takes longer)
# dnsmasq offered the station's own address to the next new client — to
# vmrun's lease for BenchmarkIPVtapDHCP's VM, which vmrun then rightly
# would not hand to the guest, and the benchmark failed (stop 21's and 22's
# CI). The leases vmrun takes for stockScript's VMs (client identifier 0 +
# "vmrun-NAME", tag "stock") last 8 minutes with T1 at 1 minute, so that
# vmrun renews them within the test, and the guests get 4 minutes from
# vmrun (half), which they renew at 2 (dhclient's script alone took 2.5
# minutes under TCG inside TCG on a loaded machine: a 1-minute lease had
# run out before it was bound). Everyone else's lease lasts 10 minutes.
hexid() { printf '00%s' "$(printf %s "$1" | od -An -tx1 | tr -d ' \n')" | sed 's/../&:/g; s/:$//'; }
{
	echo "id:01:$(cat /sys/class/net/wlan1/address),1h"
	for vm in ` + stockVMs + `; do echo "id:$(hexid "vmrun-$vm"),set:stock,8m"; done
} >/tmp/ap-hosts
$IP netns exec ap dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
	--port=0 --bind-interfaces --interface=$lan_if --except-interface=lo \
	--dhcp-range=192.168.77.100,192.168.77.150,255.255.255.0,10m --dhcp-hostsfile=/tmp/ap-hosts \
	--dhcp-option=tag:stock,option:T1,60 --dhcp-option=tag:stock,option:T2,90 \
	--dhcp-leasefile=/tmp/leases --dhcp-authoritative --no-ping --log-dhcp \
	--log-facility=/tmp/dnsmasq.log --user=root &
# dnsmasq logs its DHCP range once its sockets are bound.
wait_for 60 grep -q 'DHCP, IP range' /tmp/dnsmasq.log || { bad "the AP's dnsmasq did not start"; dump /tmp/dnsmasq.log; exit 1; }
printf 'ctrl_interface=/run/wpa_supplicant\nnetwork={\n\tssid="vmrun-test"\n\tkey_mgmt=NONE\n}\n' >/tmp/wpa.conf
t_sta=$(now)
wpa_supplicant -i wlan1 -D nl80211 -c /tmp/wpa.conf -t >/tmp/wpa.log 2>&1 &
if wait_for 60 sh -c "iw dev wlan1 link | grep -q 'Connected to'"; then
	pass "station associated after $(since "$t_sta") s"
else
	bad "station did not associate"; dump /tmp/hostapd.log /tmp/wpa.log; exit 1
fi
udhcpc -i wlan1 -n -q -t 10 -T 1 >/dev/null 2>&1 || { bad "udhcpc on wlan1"; exit 1; }
sta_ip=$($IP -4 -o addr show dev wlan1 | sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p')
sta_mac=$(cat /sys/class/net/wlan1/address)
$IP route show default | grep -q 'via 192.168.77.1 dev wlan1' || { bad "no default route via the AP"; exit 1; }
pass "station $sta_ip ($sta_mac) has its lease and its default route via the AP"
$IP netns attach rigmain 1
`
