package wifi

import (
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/nested"
	"github.com/vmrun/vmrun/internal/testutil"
)

// followLAN runs before lanScript: three hwsim radios (wlan2: a second
// access point) and the AP's LAN on a bridge (br0 in "ap"), so that both
// access points serve the same LAN.
const followLAN = "hwsim_radios=3 ap_bridge=1\n"

// followScript follows lanScript (with followLAN): a second access point
// of the same SSID on the AP's bridge (wlan2: one LAN, one gateway), then
// two inner VMs on the station, one with --net auto (ipvtap) and one with
// an explicit --net ipvtap:wlan1, and, each step waiting on the lines it
// needs (vmrun's, the guest's console markers, the station's state):
//
//	(1) a roam to the other access point: each vmrun renews (the guest's
//	    carrier toggled), no switch; each guest renews with vmrun and
//	    answers ping and TCP from the AP's side;
//	(2) the station's MAC changed while it was disconnected and down,
//	    then reconnected (NetworkManager's per-network MAC), its default
//	    route put back at once: each vmrun re-attaches its guest under
//	    the new MAC once the station is associated (a new NIC with it:
//	    the access point drops frames from the old one), the guest gets
//	    an address and answers from it;
//	(4) a wired veth uplink (namespace "lan", its own dnsmasq) takes the
//	    default route and gives it back: the auto guest moves to macvtap on
//	    the veth and back to ipvtap on the station (one QEMU), with an
//	    address and answers on each LAN; the explicit guest stays.
//
// Then SIGTERM to both, and the rig's links as before.
const followScript = `
# --- follow the uplink on Wi-Fi -----------------------------------------------
modprobe -a ipvtap sch_ingress cls_u32 act_mirred vhost_net || bad "modprobe -a ipvtap sch_ingress cls_u32 act_mirred vhost_net"
# wlan2: a second access point of SSID vmrun-test on the AP's bridge
# (one LAN, one gateway).
for ap in "2 vmrun-test"; do
	set -- $ap
	phy=$(cat /sys/class/net/wlan$1/phy80211/name)
	iw phy "$phy" set netns name ap || bad "iw phy $phy set netns name ap"
	printf 'interface=wlan%s\ndriver=nl80211\nssid=%s\nhw_mode=g\nchannel=1\nbridge=br0\nwds_sta=1\n' $1 $2 >/tmp/hostapd$1.conf
	$IP netns exec ap hostapd -t /tmp/hostapd$1.conf >/tmp/hostapd$1.log 2>&1 &
done
for i in 2; do wait_for 20 grep -q AP-ENABLED /tmp/hostapd$i.log || { bad "access point wlan$i"; dump /tmp/hostapd$i.log; }; done
bssid1=$($IP netns exec ap cat /sys/class/net/wlan0/address)
bssid2=$($IP netns exec ap cat /sys/class/net/wlan2/address)
start_links=$(links)
# The wired LAN (case 4), with an address of the rig's on it.
wired_lan
$IP addr add 192.168.88.2/24 dev vethw0
vm_links=$(links)
routes_before=$($IP route show; $IP neigh show nud permanent)

# n_of NAME PATTERN: how many lines of NAME's log match PATTERN.
n_of() { grep -c -e "$2" /tmp/$1.log; }
# more NAME PATTERN N: more than N lines of NAME's log match PATTERN.
more() { [ "$(grep -c -e "$2" /tmp/$1.log)" -gt "$3" ]; }
# last_ip NAME: the guest's latest address marker.
last_ip() { sed -n 's/.*VMRUN-GUEST-IP=\([0-9.]*\)\/.*/\1/p' /tmp/$1.log | tail -n 1; }
# answers NAME NETNS LABEL PREFIX: the guest's latest address is in PREFIX
# and answers ping and TCP from NETNS.
answers() {
	a=$(last_ip $1)
	case $a in $4*) ;; *) bad "$3: $1's address is '$a', want one in $4"; return ;; esac
	wait_for 60 $IP netns exec $2 ping -c 1 -W 2 "$a" && pass "$3: $1 answers ping at $a from $2" || { bad "$3: $1 ($a) does not answer ping from $2"; return; }
	page=$(fetch_page "$2" "$a")
	case $page in *vmrun-guest-ok*) pass "$3: $1 answers TCP at $a from $2" ;; *) bad "$3: $1's web page from $2: '$page'" ;; esac
}
# mark NAME...: the counts the next step waits to grow.
mark() {
	for v in "$@"; do
		eval "toggles_$v=\$(n_of $v 'carrier toggled in') carrier_$v=\$(n_of $v 'VMRUN-GUEST: carrier back on eth0') acks_$v=\$(n_of $v \"the guest's REQUEST .*-> ACK\")"
		eval "switches_$v=\$(n_of $v 'switched in') nics_$v=\$(n_of $v 'VMRUN-GUEST: new NIC eth0') ips_$v=\$(n_of $v 'VMRUN-GUEST-IP=[0-9]')"
	done
}
# grown NAME WHAT PATTERN SECONDS LABEL: wait for another PATTERN line
# than mark counted as WHAT; the PASS line ends with the latest one. It
# fails (status 1) when none came, so that the case skips that guest's
# next waits.
grown() {
	eval "n=\$${2}_$1"
	if wait_for "$4" more $1 "$3" "$n"; then
		pass "$5: $(grep -e "$3" /tmp/$1.log | tail -n 1 | cut -d' ' -f2-)"
	else
		bad "$5: no new '$3' line in $4 s"; tail -n 30 /tmp/$1.log
		return 1
	fi
}
connected() { iw dev wlan1 link | grep -q "Connected to $1"; }

grace=2m
t_start=$(now)
start_vm autovm auto "" --agent off
start_vm ipvvm ipvtap:wlan1 "" --agent off
reach autovm ap "auto on the station" >/tmp/reach-autovm.out 2>&1 &
r1=$!
reach ipvvm ap "explicit ipvtap on the station" >/tmp/reach-ipvvm.out 2>&1 &
r2=$!
wait $r1 $r2
cat /tmp/reach-autovm.out /tmp/reach-ipvvm.out
grep -q '^FAIL:' /tmp/reach-autovm.out /tmp/reach-ipvvm.out && failed=1
echo "follow: both guests up $(since "$t_start") s after their start"
grep -q 'following the uplink (wlan1)' /tmp/autovm.log && grep -q 'following the uplink (wlan1)' /tmp/ipvvm.log &&
	pass "follow: both runs follow wlan1" || bad "follow: a run does not follow wlan1"

# --- (1) a roam to the other access point of the same SSID ----------------------
connected "$bssid1" || bad "roam: the station is not on $bssid1: $(iw dev wlan1 link)"
mark autovm ipvvm
wpa_cli -i wlan1 scan >/dev/null
wait_for 60 sh -c "wpa_cli -i wlan1 scan_results | grep -q $bssid2" || bad "roam: $bssid2 not in the station's scan results"
t_roam=$(now)
# Pinned to the other access point, so that a slow reassociation is not
# given up for the first one.
wpa_cli -i wlan1 bssid 0 "$bssid2" | grep -q OK || bad "roam: wpa_cli bssid 0 $bssid2"
wpa_cli -i wlan1 roam "$bssid2" | grep -q OK || bad "roam: wpa_cli roam $bssid2"
wait_for 120 connected "$bssid2" && pass "roam: the station moved from $bssid1 to $bssid2 in $(since "$t_roam") s" || bad "roam: the station is not on $bssid2: $(iw dev wlan1 link)"
for v in autovm ipvvm; do
	grown $v toggles 'carrier toggled in' 120 "roam: $v's vmrun renewed (the guest's carrier toggled)" || continue
	# A guest that saw its carrier come back renews with vmrun. That it
	# saw it is reported, not required: a guest that reads its link
	# status only once the link is up again (a 200 ms blip, under TCG
	# inside TCG on a loaded machine) sees no change, and keeps its lease.
	if wait_for 60 more $v 'VMRUN-GUEST: carrier back on eth0' "$(eval echo \$carrier_$v)"; then
		echo "roam: $v's guest saw its carrier back on the same NIC"
		grown $v acks "the guest's REQUEST .*-> ACK" 120 "roam: $v's guest renewed its lease with vmrun"
	else
		echo "roam: NOTE: $v's guest did not see the carrier toggle"
	fi
	[ "$(n_of $v 'switched in')" = "$(eval echo \$switches_$v)" ] && [ "$(n_of $v 'VMRUN-GUEST: new NIC eth0')" = "$(eval echo \$nics_$v)" ] &&
		pass "roam: no switch and no new NIC for $v" || bad "roam: $v was switched or got a new NIC"
	answers $v ap "roam" 192.168.77.
done
grep -e 'carrier\|roamed\|network:' /tmp/autovm.log | tail -n 6 | sed 's/^/ROAM autovm: /'

# --- (2) the station's MAC changed, the station reconnected ----------------------
mark autovm ipvvm
newmac=02:00:00:77:00:01
t_mac=$(now)
# As NetworkManager does for a per-network MAC: the station disconnected,
# set down, given the new MAC (mac80211 refuses one while the interface is
# up on Debian 12's kernel) and set up again, then connected. The down
# drops wlan1's routes; the default route is put back in the same ip
# batch (the station keeps its address, which the down leaves), so the
# uplink is gone for milliseconds, within the watcher's hold before it
# parks an auto guest on NAT: both guests wait on their attachment, cut
# off, and are re-attached under the new MAC once the station has its
# carrier (associated) again.
wpa_cli -i wlan1 disconnect | grep -q OK || bad "mac: wpa_cli disconnect"
wait_for 60 sh -c "! iw dev wlan1 link | grep -q Connected" || bad "mac: the station did not disconnect"
printf 'link set wlan1 down\nlink set wlan1 address %s\nlink set wlan1 up\nroute replace default via 192.168.77.1 dev wlan1\n' $newmac | $IP -batch - &&
	[ "$(cat /sys/class/net/wlan1/address)" = $newmac ] && pass "mac: wlan1 set down, its MAC changed to $newmac, set up, its default route back" || bad "mac: wlan1's MAC change: $($IP link show wlan1)"
# wpa_supplicant refuses the reconnect (FAIL) while it has wlan1 as
# disabled: it reads the down and the up after the batch, so again until OK.
wait_for 60 sh -c "wpa_cli -i wlan1 reconnect | grep -q OK" || bad "mac: wpa_cli reconnect"
wait_for 120 sh -c "iw dev wlan1 link | grep -q Connected" && pass "mac: the station reconnected under $newmac in $(since "$t_mac") s" || bad "mac: the station did not reconnect: $(iw dev wlan1 link)"
for v in autovm ipvvm; do
	grown $v switches 'switched in' 120 "mac: $v's vmrun moved the guest" || continue
	grep 'switched in' /tmp/$v.log | tail -n 1 | grep -q "ipvtap → ipvtap (.*wlan1's MAC changed from $sta_mac to $newmac" &&
		pass "mac: $v was re-attached on ipvtap under $newmac" || bad "mac: $v's last switch is not a re-attachment under $newmac"
	grown $v nics 'VMRUN-GUEST: new NIC eth0' 120 "mac: $v's guest has a new NIC" || continue
	grown $v ips 'VMRUN-GUEST-IP=[0-9]' 300 "mac: $v's guest configured its new NIC" || continue
	answers $v ap "mac" 192.168.77.
done
/payload/vmrun ls --json >/tmp/ls.json 2>&1
for v in autovm ipvvm; do
	awk -v n="\"$v\"" '$0 ~ "\"name\": " n { f = 1 } f && /"mac"/ { print; exit }' /tmp/ls.json | grep -q "$newmac" &&
		pass "mac: vmrun ls --json shows $v's guest on $newmac" || { bad "mac: vmrun ls --json for $v"; cat /tmp/ls.json; }
done
grep -e 'MAC\|switch\|network:\|registered\|released' /tmp/ipvvm.log | tail -n 12 | sed 's/^/MAC ipvvm: /'

# --- (4) wired <-> Wi-Fi: the default route to the veth and back ------------------
mark autovm ipvvm
$IP route replace default via 192.168.88.1 dev vethw0
grown autovm switches 'switched in' 120 "wired: autovm moved"
grep 'switched in' /tmp/autovm.log | tail -n 1 | grep -q 'ipvtap → macvtap' && pass "wired: autovm is on macvtap" || bad "wired: autovm's last switch is not ipvtap → macvtap"
grown autovm ips 'VMRUN-GUEST-IP=[0-9]' 300 "wired: autovm's guest configured its new NIC"
answers autovm lan "wired" 192.168.88.
mark autovm
$IP route replace default via 192.168.77.1 dev wlan1
grown autovm switches 'switched in' 120 "wifi again: autovm moved"
grep 'switched in' /tmp/autovm.log | tail -n 1 | grep -q 'macvtap → ipvtap' && pass "wifi again: autovm is on ipvtap" || bad "wifi again: autovm's last switch is not macvtap → ipvtap"
grown autovm ips 'VMRUN-GUEST-IP=[0-9]' 300 "wifi again: autovm's guest configured its new NIC"
answers autovm ap "wifi again" 192.168.77.
[ "$(n_of ipvvm 'switched in')" = "$switches_ipvvm" ] && pass "wired: the explicit ipvtap guest stayed on wlan1" || bad "wired: the explicit ipvtap guest was moved"
answers ipvvm ap "wired" 192.168.77.
qpids=$(sed -n 's/.*QEMU started (pid \([0-9]*\)).*/\1/p' /tmp/autovm.log)
[ "$(echo "$qpids" | wc -w)" = 1 ] && kill -0 $qpids && pass "follow: one QEMU for autovm throughout (pid $qpids)" || bad "follow: autovm's QEMU pids: $qpids"
grep -e 'switched in\|carrier toggled in' /tmp/autovm.log /tmp/ipvvm.log | sed 's/^/SWITCH /'

stop_vm autovm "auto on the station"
stop_vm ipvvm "explicit ipvtap on the station"
`

// followEndScript: nothing left.
const followEndScript = `
[ "$(links)" = "$vm_links" ] && pass "follow: links as before the VMs" || bad "follow: links before: $vm_links; after: $(links)"
routes_after=$($IP route show; $IP neigh show nud permanent)
[ "$routes_before" = "$routes_after" ] && pass "follow: routes and permanent neighbours as before" || bad "follow: routes before: $routes_before; after: $routes_after"
$IP link del vethw0
$IP netns del lan
end_links=$(links)
[ "$start_links" = "$end_links" ] && pass "the rig's links as at the start: $end_links" || bad "links at the start: $start_links; at the end: $end_links"
[ $failed = 0 ] || dump /tmp/hostapd.log /tmp/hostapd2.log /tmp/wpa.log /tmp/dnsmasq.log /tmp/leases /tmp/autovm.log /tmp/ipvvm.log
exit $failed
`

// followChecks are the PASS lines of followScript the test requires.
var followChecks = []string{
	"auto on the station: the LAN side fetched the guest's web page",
	"explicit ipvtap on the station: the LAN side fetched the guest's web page",
	"roam: the station moved from",
	"roam: autovm's vmrun renewed", "roam: ipvvm's vmrun renewed",
	"roam: no switch and no new NIC for autovm", "roam: no switch and no new NIC for ipvvm",
	"roam: autovm answers TCP", "roam: ipvvm answers TCP",
	"mac: wlan1 set down, its MAC changed to", "mac: the station reconnected under",
	"mac: autovm was re-attached on ipvtap under", "mac: ipvvm was re-attached on ipvtap under",
	"mac: autovm answers TCP", "mac: ipvvm answers TCP",
	"mac: vmrun ls --json shows autovm's guest on", "mac: vmrun ls --json shows ipvvm's guest on",
	"wired: autovm is on macvtap", "wired: autovm answers TCP at 192.168.88.",
	"wifi again: autovm is on ipvtap", "wifi again: autovm answers TCP at 192.168.77.",
	"wired: the explicit ipvtap guest stayed on wlan1", "wired: ipvvm answers TCP",
	"follow: one QEMU for autovm throughout",
	"follow: links as before the VMs",
}

// TestWiFiFollow boots the nested rig with the Wi-Fi LAN on a bridge with
// two access points of one SSID, a wired veth LAN beside it, and two inner
// VMs on the station — --net auto and an explicit --net ipvtap — and
// follows the uplink through a roam, a change of the station's MAC and a
// move of the default route to the wired LAN and back (followScript).
// The guests boot the test guest's kernel and initramfs directly.
func TestWiFiFollow(t *testing.T) {
	rig := nested.Require(t)
	g := testutil.RequireGuest(t)
	start := time.Now()
	files := kernelBootFiles(t, rig, g)
	script := followLAN + lanScript + vmHelpers + followScript + followEndScript
	t.Logf("builds: %.1fs", time.Since(start).Seconds())
	r := nested.Run(t, nested.Payload{Files: files, Script: script, Timeout: 40 * time.Minute})
	report(t, r)
	for _, p := range checksPassed(r.Output, followChecks) {
		t.Error(p)
	}
	for _, l := range strings.Split(r.Output, "\n") {
		if strings.HasPrefix(l, "SWITCH ") {
			t.Log(strings.TrimSpace(l))
		}
	}
	t.Logf("whole test %.1fs (rig boot %.1fs, run %.1fs)", time.Since(start).Seconds(), r.Boot.Seconds(), r.Elapsed.Seconds())
}
