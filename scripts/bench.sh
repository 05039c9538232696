#!/usr/bin/env bash
# Runs vmrun's benchmarks (root: they create links in throwaway namespaces
# and boot QEMU) and prints one table of the figures they report. Each
# benchmark reports the statistic its metric names (median-..., min-...,
# max-...) over -benchtime samples. The raw output and the table also go to
# $BENCH_OUT (default docs/bench/LATEST.txt: the README's figures come from
# there), with the commit, the machine and its load; BENCH_NOTE adds a line.
# Targets are in the issue texts and README; nothing here asserts them.
set -euo pipefail
cd "$(dirname "$0")/.."
# A benchmark that cannot run (no root, no QEMU, no passt) fails instead of
# dropping its row from the table.
export VMRUN_STRICT=1

runs=(
	# package            benchmarks                                      -benchtime (samples)
	"./netsetup          ^Benchmark(Setup|Teardown|Parallel)$            20x"
	"./netsetup          ^Benchmark(RoutedSetup|RoutedTeardown)$         20x"
	"./netsetup          ^BenchmarkNATSetup$                             20x"
	"./netsetup          ^BenchmarkDatapath$                             5x"
	"./netsetup/watch    ^BenchmarkUplinkEventToDecision$                50x"
	"./internal/dhcpprobe ^BenchmarkProbeAnswered$                       20x"
	"./launcher          ^BenchmarkSwapNIC$                              20x"
	"./launcher          ^BenchmarkWarmUp$                               100x"
	"./internal/kvmcheck ^BenchmarkKVMCheck$                             20x"
	"./test/e2e          ^BenchmarkQMPReady$                             10x"
	"./test/e2e          ^BenchmarkQEMUArgv$                             20x"
	"./test/e2e          ^BenchmarkCLIStart$                             50x"
	"./test/e2e          ^BenchmarkSupervisorRSS$                        5x"
	"./test/e2e          ^BenchmarkThroughput$                           3x"
	"./test/e2e          ^BenchmarkExec$                                 30x"
	"./test/e2e          ^BenchmarkSSH$                                  20x"
	"./test/e2e          ^BenchmarkAgentReady$                           3x"
	"./test/e2e          ^BenchmarkFollowUplink$                         10x"
)

out=$(mktemp)
trap 'rm -f "$out"' EXIT
dest=${BENCH_OUT:-docs/bench/LATEST.txt}
load() { cut -d' ' -f1-3 /proc/loadavg; }
{
	echo "# make bench, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "# $(nproc) CPUs, $(uname -sr), $(qemu-system-x86_64 --version 2>/dev/null | head -n 1), /dev/kvm: $([ -e /dev/kvm ] && echo yes || echo no)"
	echo "# load average (1, 5, 15 min) at the start: $(load)"
	[ -z "${BENCH_NOTE:-}" ] || echo "# note: $BENCH_NOTE"
	echo
} >"$out"
for r in "${runs[@]}"; do
	read -r pkg pattern benchtime <<<"$r"
	echo "running $pkg -bench '$pattern' -benchtime $benchtime ..." >&2
	echo "# go test -bench '$pattern' -benchtime $benchtime $pkg (load at the start: $(load))" >>"$out"
	go test -run '^$' -bench "$pattern" -benchtime "$benchtime" -count 1 -timeout 60m "$pkg" | tee -a "$out" >&2
done

# The Wi-Fi figures come from inside the nested kernel (this kernel has no
# ipvlan): TestWiFi runs netsetup's benchmarks in the rig (named Rig...
# below) and times two inner VMs booted side by side, ipvtap over Wi-Fi and
# macvtap over a veth (TCG inside TCG: minutes; compare the two).
if [ "${BENCH_WIFI:-1}" = 1 ]; then
	echo "running ./test/wifi TestWiFi (the nested Wi-Fi rig, about 6 minutes; BENCH_WIFI=0 skips it) ..." >&2
	wifi=$(mktemp)
	trap 'rm -f "$out" "$wifi"' EXIT
	echo "# go test -run TestWiFi ./test/wifi: the rig's benchmarks (-benchtime 30x) and inner-VM timings (load at the start: $(load))" >>"$out"
	if ! go test -run '^TestWiFi$' -v -count 1 -timeout 30m ./test/wifi | tee "$wifi" >&2; then
		echo "# the rig run FAILED: its figures below are incomplete or missing" >>"$out"
		wifi_failed=1
	fi
	sed -n 's/^ *wifi_test.go:[0-9]*: Benchmark/BenchmarkRig/p' "$wifi" >>"$out"
	# TIMING <label...> guest=IP ... qemu->reachable=296.5s discover->lease=2.8s ...
	awk '/wifi_test.go:[0-9]+: TIMING / {
		label = ""
		for (i = 3; i <= NF && $i !~ /=/; i++) label = label (label == "" ? "" : "-") $i
		for (; i <= NF; i++) if ($i ~ /->/) {
			split($i, kv, "="); v = kv[2]; sub(/s$/, "", v)
			printf "BenchmarkRigBoot/%s/%s-1 1 %s s\n", label, kv[1], v
		}
	}' "$wifi" >>"$out"
fi

echo "# load average at the end: $(load)" >>"$out"
table() {
	echo
	printf '%-48s %14s  %s\n' BENCHMARK VALUE UNIT
	printf '%-48s %14s  %s\n' --------- ----- ----
	# A result line: BenchmarkName-N  iterations  value unit  value unit ...
	awk '/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
		for (i = 3; i + 1 <= NF; i += 2) {
			if ($(i+1) == "ns/op" && ($i == 0 || NF > 4)) continue # ns/op only when it is the sole figure
			printf "%-48s %14s  %s\n", name, $i, $(i+1)
		}
	}' "$out"
}
mkdir -p "$(dirname "$dest")"
{ cat "$out"; table; } >"$dest"
table
echo "raw output and table: $dest" >&2
[ "${wifi_failed:-0}" = 0 ] || { echo "the nested Wi-Fi rig failed: see above" >&2; exit 1; }
