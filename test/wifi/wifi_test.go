package wifi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/nested"
	"github.com/vmrun/vmrun/internal/testutil"
)

// planScript follows lanScript: (a) what `vmrun net plan` picks on the
// station without ipvlan (module autoloading off stands in for a kernel
// without it), with autoloading, and with ipvtap loaded; and what vmrun
// doctor's kernel probe finds on this kernel without and with ipvtap and
// vhost-net. Without ipvtap, netsetup's TestIPVtapWithoutKernelSupport
// runs here too (strict: it must pass, not skip).
const planScript = `
# --- (a) what auto picks on the station ---------------------------------------
[ -d /sys/module/ipvlan ] && bad "ipvlan is loaded before the test"
# doctor_status JSON ID: the status of one check of vmrun doctor --json.
doctor_status() { echo "$1" | awk -v id="$2" '$0 ~ "\"id\": \"" id "\"" { getline; gsub(/[",]/, ""); print $2; exit }'; }
# doctor_expect PHASE ID=STATUS...
doctor_expect() {
	phase=$1; shift
	doc=$(/payload/vmrun doctor --json 2>&1)
	for c in "$@"; do
		st=$(doctor_status "$doc" "${c%%=*}")
		[ "$st" = "${c#*=}" ] && pass "doctor $phase: ${c%%=*} is $st" || { bad "doctor $phase: ${c%%=*} is '$st', want ${c#*=}"; echo "$doc"; }
	done
}
mp=$(cat /proc/sys/kernel/modprobe)
echo /nonexistent >/proc/sys/kernel/modprobe
out=$(/payload/vmrun net plan --json --name wifi-vm 2>&1)
echo "$out"
case $out in
*'"mode": "routed"'*'"parent": "wlan1"'*'"uplink_kind": "wireless"'*) pass "(a) without ipvlan, auto picks routed on wlan1" ;;
*) bad "(a) without ipvlan: $out" ;;
esac
[ -e /dev/vhost-net ] && bad "/dev/vhost-net exists before modprobe vhost_net"
doctor_expect "without ipvtap and vhost_net" ipvtap=fail vhost-net=warn tun=ok bridge=ok
VMRUN_STRICT=1 /payload/netsetup.test -test.run '^TestIPVtapWithoutKernelSupport$' -test.v -test.timeout 2m >/tmp/gotest-noipvtap.log 2>&1
cat /tmp/gotest-noipvtap.log
grep -q '^--- PASS: TestIPVtapWithoutKernelSupport ' /tmp/gotest-noipvtap.log &&
	pass "netsetup's TestIPVtapWithoutKernelSupport passed (strict), ipvtap missing" || bad "TestIPVtapWithoutKernelSupport did not pass"
[ -d /sys/module/ipvlan ] && bad "ipvlan got loaded with autoloading off"
echo "$mp" >/proc/sys/kernel/modprobe
out=$(/payload/vmrun net plan --json --name wifi-vm 2>&1)
case $out in
*'"mode": "ipvtap"'*'"parent": "wlan1"'*"\"mac\": \"$sta_mac\""*) pass "(a) with module autoloading, auto picks ipvtap on wlan1 with the station's MAC (ipvtap module loaded: $([ -d /sys/module/ipvtap ] && echo yes || echo no))" ;;
*) bad "(a) with module autoloading: $out" ;;
esac
modprobe ipvtap || bad "modprobe ipvtap"
# tc's u32 and mirred keep an ipvtap guest's DHCP off the LAN, on the
# ipvtap's fq_codel qdisc (built into Debian's kernel), or a clsact one
# where fq_codel is missing (busybox modprobe does not resolve the
# sch_clsact alias by itself).
modprobe -a sch_ingress cls_u32 act_mirred || bad "modprobe -a sch_ingress cls_u32 act_mirred"
out=$(/payload/vmrun net plan --name wifi-vm 2>&1)
echo "$out"
case $out in
*"mode:    ipvtap on wlan1"*"mac:     $sta_mac"*) pass "(a) with ipvtap loaded, auto picks ipvtap on wlan1" ;;
*) bad "(a) with ipvtap loaded: $out" ;;
esac
modprobe vhost_net || bad "modprobe vhost_net"
wait_for 5 test -c /dev/vhost-net || bad "no /dev/vhost-net after modprobe vhost_net"
doctor_expect "with ipvtap and vhost_net" ipvtap=ok vhost-net=ok tun=ok bridge=ok macvtap=ok
case $doc in
*'"mode": "ipvtap"'*'"parent": "wlan1"'*) pass "doctor: --net auto uses ipvtap on the Wi-Fi station wlan1" ;;
*) bad "doctor's auto: $doc" ;;
esac
`

// vmHelpers are the shell functions of the parts that boot inner VMs
// (TCG inside TCG): start_vm boots the test guest — its disk image, or its
// kernel and initramfs (/payload/guest/kernel, initrd.img) with given kernel
// arguments — with vmrun, its output
// timestamped (rig uptime) in /tmp/NAME.log; wired_lan makes a wired LAN
// beside the Wi-Fi one; reach waits for a guest's
// lease, the first ping from its LAN side it answers (the TIMING line) and
// its web page; stop_vm sends SIGTERM and expects vmrun to exit 0. $grace
// is vmrun's --shutdown-grace (default 60s).
const vmHelpers = `
mkdir -p -m 1777 /var/tmp # where vmrun makes --snapshot's overlay (TMPDIR is not set)
# wired_lan: a wired LAN beside the Wi-Fi one, vethw0 here to lan0 in
# namespace "lan" (192.168.88.1/24, dnsmasq leasing .100-.150 for 10
# minutes); it returns once dnsmasq logs its DHCP range (its sockets are
# bound then).
wired_lan() {
	$IP netns add lan
	$IP -n lan link set lo up
	$IP link add vethw0 type veth peer name lan0 netns lan
	$IP link set vethw0 up
	$IP -n lan addr add 192.168.88.1/24 dev lan0
	$IP -n lan link set lan0 up
	$IP netns exec lan dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
		--port=0 --bind-interfaces --interface=lan0 --except-interface=lo \
		--dhcp-range=192.168.88.100,192.168.88.150,255.255.255.0,10m \
		--dhcp-leasefile=/tmp/leases-lan --dhcp-authoritative --no-ping --log-dhcp \
		--log-facility=/tmp/dnsmasq-lan.log --user=root &
	wait_for 60 grep -q 'DHCP, IP range' /tmp/dnsmasq-lan.log || bad "the wired LAN's dnsmasq did not start"
}
stamp() { while IFS= read -r l; do echo "$(now) $l"; done; }
start_vm() { # start_vm NAME NET [KERNEL-ARGS [VMRUN-FLAGS...]]: the disk image, or the kernel with KERNEL-ARGS
	name=$1 net=$2
	mkfifo /tmp/$name.fifo
	stamp </tmp/$name.fifo >/tmp/$name.log &
	if [ $# -gt 2 ]; then
		args=$3
		shift 3
		set -- --kernel /payload/guest/kernel --initrd /payload/guest/initrd.img \
			--append "console=ttyS0,115200 quiet loglevel=3 no_timer_check $args" "$@"
	else
		set -- --disk /payload/guest/test.qcow2 --snapshot
	fi
	/payload/vmrun "$@" --name "$name" --net "$net" \
		--console serial --mem 256M --shutdown-grace "${grace:-60s}" -v >/tmp/$name.fifo 2>&1 </dev/null &
	eval "pid_$name=$!"
}
# reach NAME NETNS LABEL: the guest's lease, the LAN side's first answered
# ping (the timings), the web page. $reach_max bounds the wait for the
# lease marker (in tries, 0.2 s apart; default 6000).
reach() {
	name=$1 ns=$2 label=$3
	eval "p=\$pid_$name"
	n=0
	until grep -q 'VMRUN-GUEST-IP=[0-9]' /tmp/$name.log; do
		n=$((n + 1))
		if [ $n -gt "${reach_max:-6000}" ] || ! kill -0 "$p" 2>/dev/null || grep -q 'VMRUN-GUEST-IP=none' /tmp/$name.log; then
			bad "$label: no lease marker"; tail -40 /tmp/$name.log; return
		fi
		sleep 0.2
	done
	gip=$(sed -n 's/.*VMRUN-GUEST-IP=\([0-9.]*\)\/.*/\1/p' /tmp/$name.log | head -n 1)
	# Pings every 0.2 s from the LAN side; the first answer's arrival is
	# when the guest became reachable.
	$IP netns exec $ns ping -i 0.2 -w 60 "$gip" 2>&1 | while IFS= read -r l; do
		echo "$(now) $l"
		case $l in *"bytes from"*) break ;; esac
	done >/tmp/$name.ping
	t_reach=$(grep -m1 'bytes from' /tmp/$name.ping | cut -d' ' -f1)
	[ -n "$t_reach" ] || { bad "$label: $gip does not answer the LAN side"; cat /tmp/$name.ping; return; }
	t_qemu=$(grep -m1 'QEMU started' /tmp/$name.log | cut -d' ' -f1)
	t_disc=$(grep -m1 'udhcpc: broadcasting discover\|udhcpc: sending discover\|DHCPDISCOVER on eth0' /tmp/$name.log | cut -d' ' -f1)
	t_lease=$(grep -m1 'VMRUN-GUEST-IP=' /tmp/$name.log | cut -d' ' -f1)
	echo "TIMING $label guest=$gip qemu_start=$t_qemu discover=$t_disc lease=$t_lease reachable=$t_reach" \
		"$(awk -v q="$t_qemu" -v d="$t_disc" -v l="$t_lease" -v r="$t_reach" 'BEGIN { printf "qemu->reachable=%.1fs discover->lease=%.1fs discover->reachable=%.1fs lease->reachable=%.1fs", r-q, l-d, r-d, r-l }')"
	wait_for 60 grep -q 'VMRUN-GUEST: ready' /tmp/$name.log || bad "$label: the guest never said ready"
	# busybox wget crashes in the rig (static glibc): HTTP by hand with nc.
	page=$(fetch_page "$ns" "$gip")
	case $page in *vmrun-guest-ok*) pass "$label: the LAN side fetched the guest's web page ($gip: $(echo "$page" | tail -n 1))" ;; *) bad "$label: web page: '$page'" ;; esac
}
# fetch_page NETNS ADDR: the guest's web page over TCP port 80 (NETNS "-":
# the rig's own namespace), up to 10 tries.
fetch_page() {
	n=0
	run=""
	[ "$1" = - ] || run="$IP netns exec $1"
	until page=$(printf 'GET / HTTP/1.0\r\n\r\n' | $run nc -w 5 "$2" 80 2>&1) && case $page in *vmrun-guest-ok*) true ;; *) false ;; esac; do
		n=$((n + 1)); [ $n -lt 10 ] || break
		sleep 1
	done
	echo "$page"
}
stop_vm() { # stop_vm NAME LABEL: SIGTERM, expect exit 0
	eval "p=\$pid_$1"
	kill -TERM "$p"
	wait "$p"
	code=$?
	[ $code = 0 ] && pass "$2: SIGTERM -> vmrun exited 0" || { bad "$2: vmrun exited $code"; tail -30 /tmp/$1.log; }
}
`

// vmStartScript boots the test guest's disk image with vmrun twice at the
// same time: on --net auto over the Wi-Fi station (ipvtap) and on --net
// macvtap over a wired veth LAN (namespace "lan", 192.168.88.1/24,
// dnsmasq). Booted side by side, the two share the rig's load, so their
// timings compare fairly.
const vmStartScript = `
# --- (c) two inner VMs: ipvtap over Wi-Fi, macvtap over a veth ----------------
wired_lan
vm_before=$(links)
routes_before=$($IP route show; $IP neigh show nud permanent)
rpf_before=$(cat /proc/sys/net/ipv4/conf/wlan1/rp_filter)
start_vm wifivm auto
start_vm wiredvm macvtap:vethw0
# Their links exist before the Go tests snapshot the rig's links.
wait_for 60 grep -q 'QEMU started' /tmp/wifivm.log || bad "ipvtap VM: QEMU did not start"
wait_for 60 grep -q 'QEMU started' /tmp/wiredvm.log || bad "macvtap VM: QEMU did not start"
`

// goTestScript runs netsetup's ipvtap tests in the rig (see
// netsetup/ipvtap_kernel_linux_test.go): a fake guest on the ipvtap fd over
// Wi-Fi and over a veth (b), the watcher (d), --guest-ip, --no-host-link,
// conflicts, unicast DHCP replies, clean-up after a kill at every step.
// Strict (a test that cannot run fails), and TestWiFi checks that each
// listed test passed (ipvtapTestsRun).
const goTestScript = `
# --- (b), (d): netsetup's ipvtap tests ---------------------------------------
set -o pipefail
VMRUN_STRICT=1 /payload/netsetup.test -test.run "${GOTEST_RUN:-^TestIPVtap}" -test.skip '^TestIPVtapWithoutKernelSupport$' \
	-test.v -test.timeout 12m 2>&1 | tee /tmp/gotest.log
status=$?
set +o pipefail
[ $status = 0 ] && pass "netsetup ipvtap tests" || bad "netsetup ipvtap tests (exit $status)"
`

// vmCheckScript waits for the two inner VMs: each guest's lease, the first
// ping from its LAN side it answers, its web page; then SIGTERM (vmrun
// exits 0) and the rig's links, routes and rp_filter as before.
const vmCheckScript = `
# Both watched at once, so that neither is timed late.
reach wifivm ap "ipvtap over Wi-Fi" >/tmp/reach-wifivm.out 2>&1 &
r1=$!
reach wiredvm lan "macvtap over a veth" >/tmp/reach-wiredvm.out 2>&1 &
r2=$!
wait $r1 $r2
cat /tmp/reach-wifivm.out /tmp/reach-wiredvm.out
grep -q '^FAIL:' /tmp/reach-wifivm.out /tmp/reach-wiredvm.out && failed=1
gip=$(sed -n 's/.*VMRUN-GUEST-IP=\([0-9.]*\)\/.*/\1/p' /tmp/wifivm.log | head -n 1)
grep -q "vmrun: wlan1: guest address $gip registered" /tmp/wifivm.log &&
	pass "ipvtap: vmrun registered the guest's address $gip by itself" || bad "ipvtap: no registration notice for '$gip'"
[ -n "$gip" ] && [ "$gip" != "$sta_ip" ] && pass "ipvtap: the guest's lease $gip is its own (the station has $sta_ip)" || bad "ipvtap: guest address '$gip', station $sta_ip"
# Retried: on a loaded machine the shim's neighbour entry may still be
# resolving when the LAN side's checks are done.
wait_for 15 ping -c 1 -W 2 "$gip" && pass "ipvtap: the host reaches the guest through the shim" || bad "ipvtap: the host cannot reach the guest"
grep -m1 'network plan' /tmp/wifivm.log
qpid=$(sed -n 's/.*QEMU started (pid \([0-9]*\)).*/\1/p' /tmp/wifivm.log | head -n 1)
# --net auto plugs the NIC in over QMP (its netdev is not in the command
# line): vhost-net shows as QEMU holding /dev/vhost-net and the kernel's
# vhost worker for it (a kthread "vhost-PID", or a thread of QEMU's on newer
# kernels), which exists once QEMU set itself as the device's owner.
if ls -l /proc/$qpid/fd 2>/dev/null | grep -q ' -> /dev/vhost-net$' &&
	cat /proc/[0-9]*/comm /proc/$qpid/task/*/comm 2>/dev/null | grep -qx "vhost-$qpid"; then
	pass "ipvtap: QEMU runs the ipvtap queue with vhost-net"
else
	bad "ipvtap: QEMU without vhost-net: fds $(ls -l /proc/$qpid/fd 2>/dev/null | sed -n 's/.* -> //p' | tr '\n' ' ')"
fi
# vmrun runs as root here, with no vmrun-qemu user: QEMU runs as nobody, confined.
qst=$(grep -E '^(Uid|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/$qpid/status 2>/dev/null | tr -s '\t' ' ' | tr '\n' ';')
[ "$qst" = "Uid: 65534 65534 65534 65534;CapPrm: 0000000000000000;CapEff: 0000000000000000;CapBnd: 0000000000000000;CapAmb: 0000000000000000;NoNewPrivs: 1;Seccomp: 2;" ] &&
	pass "ipvtap: QEMU runs as nobody with no capabilities, no_new_privs and seccomp" || bad "ipvtap: QEMU is not confined: $qst"
stop_vm wifivm "ipvtap over Wi-Fi"
stop_vm wiredvm "macvtap over a veth"
vm_after=$(links)
[ "$vm_before" = "$vm_after" ] && pass "links as before the VMs: $vm_after" || bad "links before the VMs: $vm_before; after: $vm_after"
routes_after=$($IP route show; $IP neigh show nud permanent)
[ "$routes_before" = "$routes_after" ] && pass "routes and permanent neighbours as before" || bad "routes before: $routes_before; after: $routes_after"
[ "$(cat /proc/sys/net/ipv4/conf/wlan1/rp_filter)" = "$rpf_before" ] && pass "rp_filter of wlan1 as before ($rpf_before)" || bad "rp_filter of wlan1 changed"
$IP link del vethw0
$IP netns del lan
`

// benchScript runs the set-up and teardown benchmarks in the (now quiet)
// rig, macvtap's and tap-on-bridge's set-up for comparison, and a guest's
// DHCP through vmrun against the LAN server's own (BenchmarkIPVtapDHCP).
const benchScript = `
# --- benchmarks in the nested kernel ------------------------------------------
/payload/netsetup.test -test.run '^$' -test.bench "${GOBENCH:-^Benchmark(IPVtapSetup|IPVtapTeardown|IPVtapDHCP|RoutedSetup|RoutedTeardown|Setup)\$}" -test.benchtime "${GOBENCHTIME:-30x}" -test.v -test.timeout 4m 2>&1 | tee /tmp/bench.log
if grep -q '^PASS' /tmp/bench.log; then pass "benchmarks"; else
	bad "benchmarks; their failure lines:"
	grep -E -e '--- FAIL|_test\.go:[0-9]+:|^panic|timed out' /tmp/bench.log | head -n 20 | sed 's/^[[:space:]]*/FAIL:   /'
fi
`

// endScript checks that nothing is left and ends the run.
const endScript = `
end_links=$(links)
[ "$start_links" = "$end_links" ] && pass "the rig's links as at the start: $end_links" || bad "links at the start: $start_links; at the end: $end_links"
[ $failed = 0 ] || dump /tmp/hostapd.log /tmp/wpa.log /tmp/dnsmasq.log /tmp/dnsmasq-lan.log /tmp/wifivm.log /tmp/wiredvm.log
exit $failed
`

// TestWiFi boots the nested rig once with a Wi-Fi LAN (mac80211_hwsim
// access point and station, see lan.go) and runs, in this order:
//
//	(a) `vmrun net plan` on the station: routed without ipvlan, ipvtap with it;
//	(c) two inner VMs booting the test guest's disk image — --net auto over
//	    the station (ipvtap) and macvtap over a veth — whose ~4-minute boot
//	    (TCG inside TCG) overlaps with
//	(b), (d) netsetup's ipvtap tests (fake guests on the ipvtap fd);
//	then each guest's lease, reachability from its LAN and web page, SIGTERM,
//	and nothing left; last, the set-up and teardown benchmarks.
//
// VMRUN_WIFI_RUN narrows the netsetup tests (a -test.run pattern);
// VMRUN_WIFI_NOVM=1 skips the inner VMs (about 2 minutes instead of 5);
// VMRUN_WIFI_RACE=1 runs the netsetup tests with the race detector (a
// cgo binary: the rig has glibc, for its own tools); VMRUN_WIFI_BENCH (a
// -test.bench pattern) runs only (a) and the benchmarks it matches — no
// netsetup tests, no inner VMs — for working on one benchmark;
// VMRUN_WIFI_BENCHTIME changes its -test.benchtime (30x).
func TestWiFi(t *testing.T) {
	nested.Require(t)
	noVM := os.Getenv("VMRUN_WIFI_NOVM") == "1"
	bench := os.Getenv("VMRUN_WIFI_BENCH")
	var g testutil.GuestImages
	if !noVM && bench == "" {
		g = testutil.RequireGuest(t)
	}
	start := time.Now()
	testBin := ""
	if os.Getenv("VMRUN_WIFI_RACE") == "1" {
		testBin = buildRaceTest(t, "github.com/vmrun/vmrun/netsetup")
	} else {
		testBin = nested.BuildTest(t, "github.com/vmrun/vmrun/netsetup")
	}
	files := []nested.File{
		{Src: testBin, Dst: "/payload/netsetup.test"},
		{Src: nested.BuildCommand(t, "github.com/vmrun/vmrun/cmd/vmrun"), Dst: "/payload/vmrun"},
	}
	script := runFilter() + lanScript + "start_links=$(links)\n" + planScript
	switch {
	case bench != "":
		script += "GOBENCH='" + strings.ReplaceAll(bench, "'", "") + "'\n"
		if bt := os.Getenv("VMRUN_WIFI_BENCHTIME"); bt != "" {
			script += "GOBENCHTIME='" + strings.ReplaceAll(bt, "'", "") + "'\n"
		}
	case noVM:
		script += goTestScript
	default:
		files = append(files, nested.File{Src: g.Test, Dst: "/payload/guest/test.qcow2"})
		script += vmHelpers + vmStartScript + goTestScript + vmCheckScript
	}
	script += benchScript + endScript
	t.Logf("builds: %.1fs", time.Since(start).Seconds())
	var want []string
	if bench == "" {
		want = listTests(t, testBin, goTestPattern())
	}
	r := nested.Run(t, nested.Payload{Files: files, Script: script, Timeout: 35 * time.Minute})
	report(t, r)
	if bench == "" {
		ipvtapTestsRun(t, r.Output, want)
	}
	for _, l := range strings.Split(r.Output, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "Benchmark") && strings.Contains(l, "ns/op") {
			t.Log(strings.TrimSpace(l))
		}
	}
	t.Logf("whole test %.1fs (rig boot %.1fs, run %.1fs)", time.Since(start).Seconds(), r.Boot.Seconds(), r.Elapsed.Seconds())
}

// buildRaceTest compiles pkg's tests with -race (which needs cgo, so the
// binary is dynamic against glibc).
func buildRaceTest(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "race.test")
	cmd := exec.Command(testutil.RequireCmd(t, "go"), "test", "-c", "-race", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c -race %s: %v\n%s", pkg, err, b)
	}
	return out
}

// goTestPattern is the -test.run pattern of goTestScript.
func goTestPattern() string {
	if r := os.Getenv("VMRUN_WIFI_RUN"); r != "" {
		return strings.ReplaceAll(r, "'", "")
	}
	return "^TestIPVtap"
}

// listTests lists the tests of a test binary that match pattern, as the
// rig will run them (goTestScript leaves TestIPVtapWithoutKernelSupport
// out: planScript runs it before ipvtap is loaded).
func listTests(t *testing.T, bin, pattern string) []string {
	t.Helper()
	out, err := exec.Command(bin, "-test.list", pattern).Output()
	if err != nil {
		t.Fatalf("%s -test.list %s: %v", bin, pattern, err)
	}
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if strings.HasPrefix(n, "Test") && n != "TestIPVtapWithoutKernelSupport" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		t.Fatalf("no test of %s matches %q", bin, pattern)
	}
	return names
}

// ipvtapTestsRun fails unless each of want passed in the rig (its
// "--- PASS: Name" line is in the output): an exit status 0 alone would
// also come from tests that skipped or never started.
func ipvtapTestsRun(t *testing.T, output string, want []string) {
	t.Helper()
	passed, problems := testsPassed(output, want)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("netsetup tests in the rig: %d of %d passed", passed, len(want))
}

// testsPassed counts the tests of want whose top-level "--- PASS: Name"
// line is in go test -v output, and names each of the others.
func testsPassed(output string, want []string) (passed int, problems []string) {
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^--- (PASS|FAIL|SKIP): (\S+) `).FindAllStringSubmatch(strings.ReplaceAll(output, "\r", ""), -1) {
		got[m[2]] = m[1]
	}
	for _, n := range want {
		if got[n] == "PASS" {
			passed++
		} else {
			problems = append(problems, fmt.Sprintf("netsetup's %s in the rig: %q, want PASS", n, got[n]))
		}
	}
	return passed, problems
}

// TestTestsPassed: a skipped, failed or missing test is not counted as run
// (a subtest's PASS line is not its parent's).
func TestTestsPassed(t *testing.T) {
	out := "=== RUN   TestA\r\n--- PASS: TestA (1.00s)\r\n--- SKIP: TestB (0.00s)\n--- FAIL: TestC (0.10s)\n    --- PASS: TestD/sub (0.01s)\n--- PASS: TestE (0.20s)\n"
	passed, problems := testsPassed(out, []string{"TestA", "TestB", "TestC", "TestD", "TestE"})
	if passed != 2 || len(problems) != 3 {
		t.Errorf("passed %d, problems %q", passed, problems)
	}
	for i, n := range []string{"TestB", "TestC", "TestD"} {
		if i < len(problems) && !strings.Contains(problems[i], n) {
			t.Errorf("problem %d: %q, want %s", i, problems[i], n)
		}
	}
}

// runFilter passes $VMRUN_WIFI_RUN (a -test.run pattern) to the rig's
// netsetup test binary: for working on one test.
func runFilter() string {
	if r := os.Getenv("VMRUN_WIFI_RUN"); r != "" {
		return "GOTEST_RUN='" + strings.ReplaceAll(r, "'", "") + "'\n"
	}
	return ""
}

// report logs the script's PASS/FAIL/TIMING lines and fails the test on
// any FAIL or a non-zero status.
func report(t *testing.T, r *nested.Result) {
	t.Helper()
	for _, l := range strings.Split(r.Output, "\n") {
		if strings.HasPrefix(l, "PASS: ") || strings.HasPrefix(l, "FAIL: ") || strings.HasPrefix(l, "TIMING ") {
			t.Log(l)
		}
	}
	if strings.Contains(r.Output, "\nFAIL: ") || r.Status != 0 {
		t.Errorf("the Wi-Fi rig reported failures (run.sh exit %d)", r.Status)
	}
}
