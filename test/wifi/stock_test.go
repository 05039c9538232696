package wifi

import (
	"fmt"
	"strings"
	"testing"
)

// stockScript boots two inner VMs at once on --net auto over the station
// (ipvtap), each with a DHCP client as shipped (test/guest's vmrun.dhcp):
// busybox udhcpc with no options (the MAC as client identifier, no
// broadcast flag) and Debian's ISC dhclient with its default dhclient.conf
// (no identifier). Each must get a lease of its own (not the station's, not
// the other's), answer ping and TCP from the AP's side and ping from the
// host, renew (with vmrun, which renews upstream), and at shutdown release
// its lease (to vmrun); vmrun then releases the VM's upstream lease. All
// along, the AP's lease file holds the station's lease unchanged and no
// lease but vmrun's others.
const stockScript = `
# --- (e) guests with DHCP clients as shipped, two at once on the station -----
sta_lease() { grep " $sta_ip " /tmp/leases; }
# lease_ids_ok: every lease in the AP's file is the station's or has a
# client identifier of vmrun's (0 + "vmrun-...").
lease_ids_ok() {
	awk -v ip="$sta_ip" '$3 != ip && $5 !~ /^00:76:6d:72:75:6e:2d/ { print; bad = 1 } END { exit bad }' /tmp/leases
}
sta_before=$(sta_lease)
[ -n "$sta_before" ] || bad "stock: no lease of the station $sta_ip in the AP's lease file"
stock_links=$(links)
# The kernel and initramfs: under TCG inside TCG, BIOS and syslinux take minutes.
start_vm stockvm auto vmrun.dhcp=udhcpc-stock
start_vm dhclvm auto vmrun.dhcp=dhclient
echo "stock: two VMs started at $(now)"
reach_max=3000
reach stockvm ap "udhcpc as shipped" >/tmp/reach-stockvm.out 2>&1 &
r1=$!
reach dhclvm ap "dhclient as shipped" >/tmp/reach-dhclvm.out 2>&1 &
r2=$!
wait $r1 $r2
echo "stock: both reached (or not) at $(now)"
cat /tmp/reach-stockvm.out /tmp/reach-dhclvm.out
grep -q '^FAIL:' /tmp/reach-stockvm.out /tmp/reach-dhclvm.out && failed=1
guest_ip() { sed -n 's/.*VMRUN-GUEST-IP=\([0-9.]*\)\/.*/\1/p' /tmp/$1.log | head -n 1; }
ip1=$(guest_ip stockvm) ip2=$(guest_ip dhclvm)
[ -n "$ip1" ] && [ -n "$ip2" ] && [ "$ip1" != "$ip2" ] && [ "$ip1" != "$sta_ip" ] && [ "$ip2" != "$sta_ip" ] &&
	pass "stock: two leases of their own at once: udhcpc $ip1, dhclient $ip2 (the station has $sta_ip)" ||
	bad "stock: udhcpc got '$ip1', dhclient '$ip2', the station has $sta_ip"
for g in "stockvm $ip1" "dhclvm $ip2"; do
	set -- $g
	grep -q "vmrun: wlan1: guest address $2 registered (leased from 192.168.77.1 with client-id vmrun-$1 for 2m0s)" /tmp/$1.log &&
		pass "stock: vmrun leased $2 for $1 with its own client identifier" || bad "stock: no registration of $2 for $1"
	ping -c 1 -W 2 "$2" >/dev/null 2>&1 && pass "stock: the host reaches $1 ($2)" || bad "stock: the host cannot reach $1 ($2)"
done
# Renewals: the guest's with vmrun (its lease is 1 minute: at 30 s), and
# vmrun's upstream (2 minutes: at 1 minute), each seen in the VM's log.
renewed() { # renewed NAME PATTERN: PATTERN at least twice in the log
	[ "$(grep -c "$2" /tmp/$1.log)" -ge 2 ]
}
wait_for 150 renewed stockvm 'udhcpc: lease of .* obtained' &&
	pass "stock: udhcpc renewed its lease with vmrun: $(grep 'udhcpc: lease of' /tmp/stockvm.log | tail -n 1 | cut -d' ' -f2-)" ||
	bad "stock: udhcpc did not renew"
wait_for 150 renewed dhclvm 'bound to .* renewal in' &&
	pass "stock: dhclient renewed its lease with vmrun: $(grep 'bound to' /tmp/dhclvm.log | tail -n 1 | cut -d' ' -f2-)" ||
	bad "stock: dhclient did not renew"
for g in "stockvm $ip1" "dhclvm $ip2"; do
	set -- $g
	wait_for 150 grep -q "network: wlan1: the guest's lease of $2 was extended" /tmp/$1.log &&
		pass "stock: vmrun renewed $1's upstream lease of $2" || bad "stock: vmrun did not renew $1's upstream lease"
done
grep -c 'DHCPREQUEST(wlan0)' /tmp/dnsmasq.log | xargs echo "stock: DHCPREQUESTs at the AP so far:"
lease_ids_ok && pass "stock: the AP's leases are the station's and vmrun's only" || bad "stock: a lease in the AP's file has neither the station's nor a vmrun client identifier"
[ "$(sta_lease)" = "$sta_before" ] && pass "stock: the station's lease unchanged while the guests ran" || bad "stock: the station's lease changed: '$(sta_lease)', was '$sta_before'"
stop_vm stockvm "udhcpc as shipped"
stop_vm dhclvm "dhclient as shipped"
for g in "stockvm $ip1 udhcpc-stock" "dhclvm $ip2 dhclient"; do
	set -- $g
	# The log's writer (stamp) may still be behind vmrun's exit.
	wait_for 20 grep -q "VMRUN-GUEST: released the lease ($3)" /tmp/$1.log && pass "stock: $1's guest released its lease at shutdown" || bad "stock: $1's guest did not release its lease"
	# dnsmasq writes its lease file after vmrun's release has left.
	wait_for 20 sh -c "! grep -q ' $2 ' /tmp/leases" && pass "stock: $1's lease of $2 is gone from the AP (vmrun released it)" || bad "stock: $1's lease of $2 is still in the AP's file"
done
grep -q "DHCPRELEASE(wlan0) $sta_ip " /tmp/dnsmasq.log && bad "stock: the AP saw a release of the station's address $sta_ip"
lease_ids_ok && [ "$(sta_lease)" = "$sta_before" ] && pass "stock: the station's lease untouched at the end: $sta_before" ||
	bad "stock: the station's lease at the end: '$(sta_lease)', was '$sta_before'"
[ "$(links)" = "$stock_links" ] && pass "stock: links as before the VMs" || bad "stock: links before: $stock_links; after: $(links)"
`

// stockChecks are the PASS lines of stockScript TestWiFi requires: the
// script's FAIL lines fail the test, and these make sure that the part ran.
var stockChecks = []string{
	"stock: two leases of their own at once",
	"udhcpc as shipped: the LAN side fetched the guest's web page",
	"dhclient as shipped: the LAN side fetched the guest's web page",
	"stock: the host reaches stockvm",
	"stock: the host reaches dhclvm",
	"stock: udhcpc renewed its lease with vmrun",
	"stock: dhclient renewed its lease with vmrun",
	"stock: vmrun renewed stockvm's upstream lease",
	"stock: vmrun renewed dhclvm's upstream lease",
	"stock: stockvm's guest released its lease at shutdown",
	"stock: dhclvm's guest released its lease at shutdown",
	"stock: stockvm's lease of",
	"stock: dhclvm's lease of",
	"stock: the station's lease untouched at the end",
}

// checksPassed names each of want that no "PASS: " line of output starts
// with.
func checksPassed(output string, want []string) (problems []string) {
	for _, w := range want {
		if !strings.Contains(output, "\nPASS: "+w) {
			problems = append(problems, fmt.Sprintf("the rig did not pass %q", w))
		}
	}
	return problems
}

// TestChecksPassed: a check is passed only by a PASS line that starts with it.
func TestChecksPassed(t *testing.T) {
	out := "x\nPASS: stock: a b\nFAIL: stock: c\nPASS: d stock: e\n"
	got := checksPassed(out, []string{"stock: a", "stock: c", "stock: e"})
	if len(got) != 2 || !strings.Contains(got[0], "stock: c") || !strings.Contains(got[1], "stock: e") {
		t.Errorf("%q", got)
	}
}
