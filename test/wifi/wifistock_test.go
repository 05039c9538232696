package wifi

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/nested"
	"github.com/vmrun/vmrun/internal/testutil"
)

// stockScript boots two inner VMs at once on --net auto over the station
// (ipvtap), each with a DHCP client as shipped (test/guest's vmrun.dhcp):
// busybox udhcpc with no options (the MAC as client identifier, no
// broadcast flag) and Debian's ISC dhclient with its default dhclient.conf
// (no identifier). Each must get a lease of its own (not the station's, not
// the other's) that vmrun took upstream with the VM's identifier, answer
// ping and TCP from the AP's side and from the rig host (through the
// shim), renew with vmrun while vmrun renews upstream (the AP's lease file
// shows a later expiry; no renewal of vmrun's fails), and at shutdown
// release its lease (to vmrun), after which vmrun releases the upstream
// one. All along, the AP's lease file holds the station's lease unchanged
// and no lease but vmrun's others. The guests' and vmrun's DHCP lines and
// a TIMING line per guest say how long each step took.
const stockScript = `
# --- stock DHCP clients: two guests as shipped on the station -----------------
modprobe -a ipvtap sch_ingress cls_u32 act_mirred vhost_net || bad "modprobe -a ipvtap sch_ingress cls_u32 act_mirred vhost_net"
wait_for 5 test -c /dev/vhost-net || bad "no /dev/vhost-net after modprobe vhost_net"
sta_lease() { grep " $sta_ip " /tmp/leases; }
# lease_of IP: IP's line in the AP's lease file (expiry MAC IP NAME CLIENT-ID).
lease_of() { grep " $1 " /tmp/leases; }
# lease_ids_ok: every lease in the AP's file is the station's or has a
# client identifier of vmrun's (0 + "vmrun-").
lease_ids_ok() {
	awk -v ip="$sta_ip" '$3 != ip && $5 !~ /^00:76:6d:72:75:6e:2d/ { print; bad = 1 } END { exit bad }' /tmp/leases
}
wait_for 60 sta_lease || bad "stock: no lease of the station $sta_ip in the AP's lease file"
sta_before=$(sta_lease)
vm_links=$(links)
t_start=$(now)
# reach waits for the lease marker as long as the test's cap allows. At
# the power button dhclient -r runs its script after the RELEASE: more than
# vmrun's default minute of grace in a quiet rig (17-min run at load 1-2).
reach_max=100000 grace=10m
start_vm stockvm auto vmrun.dhcp=udhcpc-stock --agent off
start_vm dhclvm auto vmrun.dhcp=dhclient --agent off
reach stockvm ap "udhcpc as shipped" >/tmp/reach-stockvm.out 2>&1 &
r1=$!
reach dhclvm ap "dhclient as shipped" >/tmp/reach-dhclvm.out 2>&1 &
r2=$!
wait $r1 $r2
echo "stock: both guests reached (or given up) $(since "$t_start") s after their start"
cat /tmp/reach-stockvm.out /tmp/reach-dhclvm.out
grep -q '^FAIL:' /tmp/reach-stockvm.out /tmp/reach-dhclvm.out && failed=1
# t_of NAME PATTERN: the stamp of the first line of NAME's log with PATTERN.
t_of() { grep -m1 -e "$2" /tmp/$1.log | cut -d' ' -f1; }
# dhcp_timing NAME LABEL DISCOVER-PATTERN BOUND-PATTERN: from the guest's
# first DISCOVER to vmrun's OFFER and ACK and the guest's lease, beside
# vmrun's own exchange with the AP's server at attach time.
dhcp_timing() {
	d=$(t_of $1 "$3") o=$(t_of $1 "the guest's DISCOVER") a=$(t_of $1 "the guest's REQUEST") b=$(t_of $1 "$4")
	up=$(sed -n "s/.*the LAN's DHCP server answered vmrun in \([^ ]*\).*/\1/p" /tmp/$1.log | head -n 1)
	echo "TIMING $2: guest DISCOVER at $d, vmrun's OFFER $o, vmrun's ACK $a, guest bound $b:" \
		"$(awk -v d="$d" -v o="$o" -v a="$a" -v b="$b" 'BEGIN { printf "DISCOVER->OFFER %.1fs, DISCOVER->ACK %.1fs, DISCOVER->bound %.1fs", o-d, a-d, b-d }');" \
		"$(grep -c -e "$3" /tmp/$1.log) DISCOVERs, $(grep -c 'No DHCPOFFERS received' /tmp/$1.log) dhclient give-ups;" \
		"vmrun's own DHCP exchange with the AP's server: $up"
}
dhcp_timing stockvm "udhcpc as shipped" 'udhcpc: broadcasting discover\|udhcpc: sending discover' 'udhcpc: lease of'
dhcp_timing dhclvm "dhclient as shipped" 'DHCPDISCOVER on eth0' 'bound to '
guest_ip() { sed -n 's/.*VMRUN-GUEST-IP=\([0-9.]*\)\/.*/\1/p' /tmp/$1.log | head -n 1; }
ip1=$(guest_ip stockvm) ip2=$(guest_ip dhclvm)
[ -n "$ip1" ] && [ -n "$ip2" ] && [ "$ip1" != "$ip2" ] && [ "$ip1" != "$sta_ip" ] && [ "$ip2" != "$sta_ip" ] &&
	pass "stock: two leases of their own at once: udhcpc $ip1, dhclient $ip2 (the station has $sta_ip)" ||
	bad "stock: udhcpc got '$ip1', dhclient '$ip2', the station has $sta_ip"
for g in "stockvm $ip1" "dhclvm $ip2"; do
	set -- $g
	[ -n "$2" ] || continue
	grep -q "wlan1: guest address $2 registered (leased from 192.168.77.1 with client-id vmrun-$1 for 8m0s)" /tmp/$1.log &&
		pass "stock: vmrun leased $2 for $1 with its own client identifier" || bad "stock: no registration of $2 for $1"
	ping -c 1 -W 5 "$2" >/dev/null 2>&1 && pass "stock: the host reaches $1 ($2) through the shim: ping" || bad "stock: the host cannot ping $1 ($2)"
	page=$(fetch_page - "$2")
	case $page in *vmrun-guest-ok*) pass "stock: the host reaches $1 ($2) through the shim: TCP ($(echo "$page" | tail -n 1))" ;; *) bad "stock: the host's TCP to $1 ($2): '$page'" ;; esac
done
# Renewals. The guests' leases from vmrun last 4 minutes (half the
# upstream 8), so each renews with vmrun at 2 (its script may take minutes
# more); vmrun renews upstream every minute (T1), which the AP's lease
# file shows as a later expiry.
renewed() { [ "$(grep -c -e "$2" /tmp/$1.log)" -ge 2 ]; } # renewed NAME PATTERN: PATTERN twice or more
expiry() { lease_of "$1" | cut -d' ' -f1; }
later() { e=$(expiry "$1"); [ -n "$e" ] && [ "$e" -gt "$2" ]; } # later IP EXPIRY
exp1=$(expiry "$ip1") exp2=$(expiry "$ip2")
wait_for 900 renewed stockvm 'udhcpc: lease of .* obtained' &&
	pass "stock: udhcpc renewed its lease with vmrun: $(grep 'udhcpc: lease of' /tmp/stockvm.log | tail -n 1 | cut -d' ' -f2-)" ||
	bad "stock: udhcpc did not renew"
wait_for 900 renewed dhclvm 'bound to .* renewal in' &&
	pass "stock: dhclient renewed its lease with vmrun: $(grep 'bound to' /tmp/dhclvm.log | tail -n 1 | cut -d' ' -f2-)" ||
	bad "stock: dhclient did not renew"
for g in "stockvm $ip1 $exp1" "dhclvm $ip2 $exp2"; do
	set -- $g
	[ -n "$3" ] || { bad "stock: no lease of $1's '$2' in the AP's lease file"; continue; }
	wait_for 180 later "$2" "$3" &&
		pass "stock: vmrun renewed $1's upstream lease of $2: the AP's lease file says it expires at $(expiry "$2"), was $3" ||
		bad "stock: $1's upstream lease of $2 at the AP still expires at $(expiry "$2"), as before"
	grep -q "network: wlan1: the guest's lease of $2 was extended" /tmp/$1.log &&
		pass "stock: vmrun followed the renewal of $1's lease" || bad "stock: vmrun did not report $1's renewed lease"
done
lease_ids_ok && pass "stock: the AP's leases are the station's and vmrun's only" || bad "stock: a lease in the AP's file has neither the station's nor a vmrun client identifier"
[ "$(sta_lease)" = "$sta_before" ] && pass "stock: the station's lease unchanged while the guests ran" || bad "stock: the station's lease changed: '$(sta_lease)', was '$sta_before'"
stop_vm stockvm "udhcpc as shipped"
stop_vm dhclvm "dhclient as shipped"
for g in "stockvm $ip1 udhcpc-stock" "dhclvm $ip2 dhclient"; do
	set -- $g
	# The log's writer (stamp) may still be behind vmrun's exit.
	wait_for 20 grep -q "VMRUN-GUEST: released the lease ($3)" /tmp/$1.log &&
		pass "stock: $1's guest released its lease at shutdown" || bad "stock: $1's guest did not release its lease"
	grep -q "the guest's RELEASE: no answer (guest released $2)" /tmp/$1.log &&
		pass "stock: vmrun took $1's RELEASE of $2" || bad "stock: vmrun saw no RELEASE of $2 from $1"
	# dnsmasq writes its lease file after vmrun's release has left.
	wait_for 20 sh -c "! grep -q ' $2 ' /tmp/leases" && pass "stock: $1's lease of $2 is gone from the AP (vmrun released it)" || bad "stock: $1's lease of $2 is still in the AP's file"
	# Every renewal of vmrun's went through (a failed one logs "... for ADDR: ERROR").
	fails=$(grep "dhcp lease on \"wlan1\": [a-z-]* for $2: " /tmp/$1.log)
	[ -z "$fails" ] && pass "stock: every upstream renewal for $1 succeeded ($(grep -c "dhcp lease on \"wlan1\": init-reboot request kept $2" /tmp/$1.log) renewals)" ||
		bad "stock: failed upstream renewals for $1: $fails"
done
grep -q "DHCPRELEASE(wlan0) $sta_ip " /tmp/dnsmasq.log && bad "stock: the AP saw a release of the station's address $sta_ip"
lease_ids_ok && [ "$(sta_lease)" = "$sta_before" ] && pass "stock: the station's lease untouched at the end: $sta_before" ||
	bad "stock: the station's lease at the end: '$(sta_lease)', was '$sta_before'"
[ "$(links)" = "$vm_links" ] && pass "stock: links as before the VMs" || bad "stock: links before: $vm_links; after: $(links)"
for n in stockvm dhclvm; do
	grep -e 'DHCPDISCOVER\|DHCPOFFER\|DHCPREQUEST\|DHCPACK\|DHCPNAK\|bound to\|No DHCPOFFERS\|No working leases' \
		-e "udhcpc: \|the guest's [A-Z]* \|answered vmrun\|dhcp lease on\|VMRUN-GUEST\|registered\|QEMU started" /tmp/$n.log | head -n 80 | sed "s/^/DHCP $n: /"
done
`

// stockEndScript ends the run: nothing left, the logs on failure.
const stockEndScript = `
end_links=$(links)
[ "$start_links" = "$end_links" ] && pass "the rig's links as at the start: $end_links" || bad "links at the start: $start_links; at the end: $end_links"
[ $failed = 0 ] || dump /tmp/hostapd.log /tmp/wpa.log /tmp/dnsmasq.log /tmp/leases /tmp/stockvm.log /tmp/dhclvm.log
exit $failed
`

// stockChecks are the PASS lines of stockScript the test requires: the
// script's FAIL lines fail it, and these make sure that each part ran.
var stockChecks = []string{
	"udhcpc as shipped: the LAN side fetched the guest's web page",
	"dhclient as shipped: the LAN side fetched the guest's web page",
	"stock: two leases of their own at once",
	"stock: vmrun leased ", // twice: checked by count below
	"stock: the host reaches stockvm",
	"stock: the host reaches dhclvm",
	"stock: udhcpc renewed its lease with vmrun",
	"stock: dhclient renewed its lease with vmrun",
	"stock: vmrun renewed stockvm's upstream lease",
	"stock: vmrun renewed dhclvm's upstream lease",
	"stock: every upstream renewal for stockvm succeeded",
	"stock: every upstream renewal for dhclvm succeeded",
	"stock: stockvm's guest released its lease at shutdown",
	"stock: dhclvm's guest released its lease at shutdown",
	"stock: vmrun took stockvm's RELEASE",
	"stock: vmrun took dhclvm's RELEASE",
	"stock: stockvm's lease of",
	"stock: dhclvm's lease of",
	"stock: the station's lease untouched at the end",
	"stock: links as before the VMs",
}

// TestWiFiStockGuests boots the nested rig with the Wi-Fi LAN (lan.go)
// and two inner VMs on ipvtap over the station at once, one with busybox
// udhcpc and one with Debian's ISC dhclient, each as shipped (stockScript):
// the guests' own leases through vmrun, reachability from the AP's side
// and the host, renewals on both sides, releases, and the station's lease
// untouched. The guests boot the test guest's kernel and initramfs
// directly (no BIOS and boot loader: minutes less under TCG inside TCG).
// Its file sorts after wifi_test.go, so it runs last in the package: in
// make test, after the end-to-end suite beside which TestWiFi runs has
// usually ended, so that its 17 minutes (quiet machine) are not doubled by
// that load (two runs beside other rigs outlasted the 35-minute cap).
func TestWiFiStockGuests(t *testing.T) {
	rig := nested.Require(t)
	g := testutil.RequireGuest(t)
	start := time.Now()
	files := kernelBootFiles(t, rig, g)
	script := lanScript + "start_links=$(links)\n" + vmHelpers + stockScript + stockEndScript
	t.Logf("builds: %.1fs", time.Since(start).Seconds())
	r := nested.Run(t, nested.Payload{Files: files, Script: script, Timeout: 35 * time.Minute})
	report(t, r)
	for _, p := range checksPassed(r.Output, stockChecks) {
		t.Error(p)
	}
	if n := strings.Count(r.Output, "\nPASS: stock: vmrun leased "); n != 2 {
		t.Errorf("the rig saw %d of the 2 guests' addresses leased with their own client identifier", n)
	}
	t.Logf("whole test %.1fs (rig boot %.1fs, run %.1fs)", time.Since(start).Seconds(), r.Boot.Seconds(), r.Elapsed.Seconds())
}

// kernelBootFiles are the payload of a test whose inner guests boot the
// test guest's kernel and initramfs directly (start_vm with kernel
// arguments): vmrun, the kernel (guestKernel) and the initramfs.
func kernelBootFiles(t *testing.T, rig nested.Rig, g testutil.GuestImages) []nested.File {
	t.Helper()
	return []nested.File{
		{Src: nested.BuildCommand(t, "github.com/vmrun/vmrun/cmd/vmrun"), Dst: "/payload/vmrun"},
		{Src: guestKernel(t, rig, g), Dst: "/payload/guest/kernel"},
		{Src: g.Initrd, Dst: "/payload/guest/initrd.img"},
	}
}

// guestKernel is the kernel the inner guests boot: the rig's uncompressed
// vmlinux when the test guest's vmlinuz is the rig's own (the same
// Debian package; under TCG inside TCG, decompressing vmlinuz alone takes
// minutes), else the test guest's vmlinuz.
func guestKernel(t *testing.T, rig nested.Rig, g testutil.GuestImages) string {
	t.Helper()
	a, errA := os.ReadFile(g.Kernel)
	b, errB := os.ReadFile(filepath.Join(rig.Dir, "vmlinuz"))
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Logf("the inner guests boot %s: not the rig's kernel (%v, %v)", g.Kernel, errA, errB)
		return g.Kernel
	}
	return rig.Kernel
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
