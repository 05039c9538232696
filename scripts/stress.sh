#!/usr/bin/env bash
# make stress: the flakiness check. Runs the pure, kernel and launcher test
# layers (every package but the QEMU end-to-end tests and the nested rig)
# STRESS_COUNT times (default 5) under the conditions that broke tests
# before: a machine that looks fresh to QEMU (the page cache is dropped
# first) and is loaded (a busy loop on every core for the whole run). The
# busy loops are this script's own children, killed by PID when it ends.
# Root: the kernel and launcher layers need it, and so does dropping the
# page cache. Strict like CI (CI=true): a test that cannot run fails.
#   STRESS_COUNT  -count for go test (at least 5 for the check to count)
#   STRESS_RUN    a go test -run pattern, to stress a few tests only
#   STRESS_PKGS   the packages (default: all but ./test/e2e, ./test/wifi
#                 and ./internal/nested)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "make stress needs root (kernel and launcher tests, dropping the page cache): run it as root or with sudo" >&2
	exit 1
fi
count=${STRESS_COUNT:-5}
if ! [[ $count =~ ^[0-9]+$ ]] || ((count < 1)); then
	echo "STRESS_COUNT=$count is not a positive number: give e.g. STRESS_COUNT=5" >&2
	exit 1
fi
if [ -n "${STRESS_PKGS:-}" ]; then
	read -r -a pkgs <<<"$STRESS_PKGS"
else
	mapfile -t pkgs < <(go list ./... | grep -v -e '/test/e2e$' -e '/test/wifi$' -e '/internal/nested$')
fi
run=()
[ -z "${STRESS_RUN:-}" ] || run=(-run "$STRESS_RUN")

# Compile first, unloaded: the check is about the tests, not the compiler.
go test -race -count=1 -run '^$' "${pkgs[@]}" >/dev/null

loops=()
stop_loops() {
	for pid in "${loops[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${loops[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	loops=()
}
trap stop_loops EXIT
trap 'stop_loops; exit 130' INT TERM

sync
echo 3 >/proc/sys/vm/drop_caches
cores=$(nproc)
for _ in $(seq "$cores"); do
	(while :; do :; done) &
	loops+=("$!")
done
echo "make stress: -count=$count, $cores busy loops (pids ${loops[*]}), page cache dropped; load average $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
rc=0
CI=true go test -race -count="$count" -timeout 180m "${run[@]}" "${pkgs[@]}" || rc=$?
stop_loops
echo "make stress: $(( $(date +%s) - start )) s, $([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")"
exit "$rc"
