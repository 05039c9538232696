package wifi

import (
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/nested"
	"github.com/vmrun/vmrun/internal/testutil"
)

// memberScript follows lanScript: `vmrun setup` as root in the rig, then a
// member of group vmrun (not root) runs the installed binary. The rig has
// no udev, which on Debian makes /dev/net/tun 0666: the script does.
const memberScript = `
# --- vmrun setup, and a member of group vmrun ----------------------------------
modprobe ipvtap || bad "modprobe ipvtap"
echo 'vmrmember:x:1500:1500::/nonexistent:/bin/sh' >>/etc/passwd
echo 'vmrmember:x:1500:' >>/etc/group
echo 'vmrun:x:1501:vmrmember' >>/etc/group
chmod 0666 /dev/net/tun
mkdir -p /var/tmp && chmod 1777 /var/tmp # where vmrun, run by the member, makes --snapshot's overlay
mkdir -p /tmp/rt-member && chown 1500:1500 /tmp/rt-member
if out=$(/payload/vmrun setup --bin /tmp/inst/vmrun --group vmrun --no-networkmanager 2>&1); then
	pass "vmrun setup: $(echo "$out" | tr '\n' ' ')"
else
	bad "vmrun setup: $out"; exit 1
fi
grep -q '^allow wlan1$' /etc/vmrun/allow.conf && pass "the ACL allows wlan1 (the default-route interface)" || bad "ACL: $(cat /etc/vmrun/allow.conf)"
as_member() { su -s /bin/sh vmrmember -c "cd /tmp && VMRUN_RUNTIME_DIR=/tmp/rt-member exec $*"; }
who=$(as_member id)
case $who in *uid=1500*vmrun*) pass "member: $who" ;; *) bad "member: $who"; exit 1 ;; esac
out=$(/payload/vmrun net plan --json --name unprivvm 2>&1)
case $out in *'"mode": "ipvtap"'*'"parent": "wlan1"'*) pass "root's auto plan on wlan1: ipvtap" ;; *) bad "root's auto plan: $out" ;; esac
out=$(as_member /tmp/inst/vmrun net plan --json --name unprivvm 2>&1)
echo "$out"
case $out in
*'"mode": "routed"'*'"parent": "wlan1"'*'"notice": "ipvtap needs CAP_SYS_ADMIN'*) pass "the member's auto plan on wlan1: routed (ipvtap needs CAP_SYS_ADMIN)" ;;
*) bad "the member's auto plan: $out" ;;
esac
`

// memberVMScript boots the test guest's disk as the member with --net auto
// on the station (TCG inside TCG) and checks: the lease vmrun took from the
// access point's dnsmasq is the guest's, the access point's side pings the
// guest and fetches its page, QEMU runs without capabilities and vmrun with
// none effective, SIGTERM ends vmrun with 0 and the rig is as before.
const memberVMScript = `
# --- the member's guest: --net auto over Wi-Fi ----------------------------------
links_before=$(links)
state() { $IP route show; $IP neigh show proxy; $IP neigh show nud permanent; cat /proc/sys/net/ipv4/conf/wlan1/forwarding /proc/sys/net/ipv4/neigh/wlan1/proxy_delay; }
state_before=$(state)
t0=$(now)
as_member /tmp/inst/vmrun --disk /payload/guest/test.qcow2 --snapshot --name unprivvm --net auto \
	--console serial --mem 256M --shutdown-grace 60s -v >/tmp/unprivvm.log 2>&1 </dev/null &
supid=$! # su waits for its child
wait_for 30 grep -q 'QEMU started' /tmp/unprivvm.log || { bad "QEMU did not start"; dump /tmp/unprivvm.log; exit 1; }
pid=$(pidof vmrun)
case $pid in ''|*' '*) bad "vmrun's pid: '$pid'"; exit 1 ;; esac
grep -m1 'network plan' /tmp/unprivvm.log
qpid=$(sed -n 's/.*QEMU started (pid \([0-9]*\)).*/\1/p' /tmp/unprivvm.log | head -n 1)
for k in CapEff CapPrm CapInh CapAmb; do
	v=$(sed -n "s/^$k:[[:space:]]*//p" /proc/$qpid/status)
	[ "$v" = 0000000000000000 ] || bad "QEMU $k $v"
done
quid=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$qpid/status)
[ "$quid" = 1500 ] && pass "QEMU runs as the member with no capabilities" || bad "QEMU uid $quid"
if wait_for 1200 grep -q 'VMRUN-GUEST-IP=[0-9]' /tmp/unprivvm.log; then
	gip=$(sed -n 's/.*VMRUN-GUEST-IP=\([0-9.]*\)\/.*/\1/p' /tmp/unprivvm.log | head -n 1)
	echo "TIMING member routed over Wi-Fi: start->guest lease $(since "$t0") s"
	pass "the guest has $gip"
else
	bad "no lease marker from the guest"; tail -60 /tmp/unprivvm.log
fi
# Checked once the guest runs, not at "QEMU started": with --net auto QEMU
# starts before the network set-up (which raises vmrun's capabilities) and
# the NIC is plugged in before the guest runs.
[ "$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/$pid/status)" = 0000000000000000 ] && pass "vmrun has no capability effective while the guest runs" || bad "vmrun CapEff $(sed -n 's/^CapEff:[[:space:]]*//p' /proc/$pid/status)"
prm=$(sed -n 's/^CapPrm:[[:space:]]*//p' /proc/$pid/status)
[ "$prm" = 0000000008003000 ] && pass "vmrun's permitted set: cap_net_admin, cap_net_raw, cap_mknod" || bad "vmrun CapPrm $prm"
grep -q "(leased from 192.168.77.1 with client-id vmrun-unprivvm" /tmp/unprivvm.log && pass "vmrun leased the guest's address from the access point's dnsmasq" || bad "no upstream lease notice"
grep -q " $gip " /tmp/leases && pass "dnsmasq's lease file has $gip" || bad "dnsmasq's leases: $(cat /tmp/leases)"
[ -n "$gip" ] && [ "$gip" != "$sta_ip" ] && pass "the guest's address $gip is its own (the station has $sta_ip)" || bad "guest address '$gip', station $sta_ip"
if $IP netns exec ap ping -c 1 -w 60 "$gip" >/tmp/unprivvm.ping 2>&1; then
	pass "the access point's side pings the guest ($(grep 'bytes from' /tmp/unprivvm.ping | head -n 1))"
else
	bad "the access point's side cannot ping $gip"; cat /tmp/unprivvm.ping
fi
wait_for 120 grep -q 'VMRUN-GUEST: ready' /tmp/unprivvm.log || bad "the guest never said ready"
n=0
until page=$(printf 'GET / HTTP/1.0\r\n\r\n' | $IP netns exec ap nc -w 5 "$gip" 80 2>&1) && case $page in *vmrun-guest-ok*) true ;; *) false ;; esac; do
	n=$((n + 1)); [ $n -lt 10 ] || break
	sleep 1
done
case $page in *vmrun-guest-ok*) pass "the access point's side fetched the guest's web page" ;; *) bad "web page: '$page'" ;; esac
kill -TERM $pid
wait $supid
code=$?
[ $code = 0 ] && pass "SIGTERM -> vmrun exited 0" || { bad "vmrun exited $code"; tail -40 /tmp/unprivvm.log; }
[ "$links_before" = "$(links)" ] && pass "links as before" || bad "links before: $links_before; after: $(links)"
[ "$state_before" = "$(state)" ] && pass "routes, proxy and permanent neighbours, wlan1's sysctls as before" || bad "before: $state_before; after: $(state)"
[ -z "$(ls -A /tmp/rt-member)" ] && pass "the member's runtime directory is empty" || bad "left in the runtime directory: $(ls -A /tmp/rt-member)"
[ $failed = 0 ] || dump /tmp/unprivvm.log /tmp/dnsmasq.log
exit $failed
`

// TestWiFiUnprivileged boots the nested rig with the Wi-Fi LAN (lan.go),
// runs `vmrun setup` there as root and, as a member of group vmrun who is
// not root, `vmrun --net auto` on the station: routed mode (ipvtap would
// need CAP_SYS_ADMIN; docs/security.md), an address leased from the access
// point's dnsmasq, the guest pinged from the access point's side.
func TestWiFiUnprivileged(t *testing.T) {
	nested.Require(t)
	g := testutil.RequireGuest(t)
	start := time.Now()
	files := []nested.File{
		{Src: nested.BuildCommand(t, "github.com/vmrun/vmrun/cmd/vmrun"), Dst: "/payload/vmrun"},
		{Src: g.Test, Dst: "/payload/guest/test.qcow2"},
	}
	script := lanScript + memberScript + memberVMScript
	r := nested.Run(t, nested.Payload{Files: files, Script: script, Timeout: 35 * time.Minute})
	report(t, r)
	t.Logf("whole test %.1fs (rig boot %.1fs, run %.1fs)", time.Since(start).Seconds(), r.Boot.Seconds(), r.Elapsed.Seconds())
}
