package nested

// ScriptHelpers is the start of a payload script that reports checks:
// $IP (the rig's iproute2), pass and bad (PASS:/FAIL: lines; bad sets
// $failed), now and since (rig uptime, seconds since a stamp), wait_for
// SECONDS CMD... (retry CMD every 0.2 s) and dump FILE... .
const ScriptHelpers = `
IP=/usr/sbin/ip
failed=0
pass() { echo "PASS: $*"; }
bad() { echo "FAIL: $*"; failed=1; }
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
wait_for() { # wait_for SECONDS CMD...: retry CMD every 0.2 s
	n=$(($1 * 5)); shift
	until "$@" >/dev/null 2>&1; do
		n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.2
	done
}
dump() { for f in "$@"; do echo "--- $f"; cat "$f"; done; }
`
