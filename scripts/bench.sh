#!/usr/bin/env bash
# Runs vmrun's benchmarks (root: they create links in throwaway namespaces
# and boot QEMU) and prints one table of the figures they report.
# Targets are in the issue texts and README; nothing here asserts them.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=(
	# package            benchmarks                                      -benchtime
	"./netsetup          ^Benchmark(Setup|Teardown|Parallel)$            20x"
	"./netsetup          ^Benchmark(RoutedSetup|RoutedTeardown)$         20x"
	"./netsetup          ^BenchmarkDatapath$                             1x"
	"./test/e2e          ^Benchmark(QMPReady|SupervisorRSS)$             10x"
	"./test/e2e          ^BenchmarkThroughput$                           1x"
)
# The Wi-Fi figures are measured inside the nested kernel (ipvlan, hwsim).
if [ -d ./test/wifi ] && grep -rqs "func Benchmark" ./test/wifi; then
	runs+=("./test/wifi . 3x")
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in "${runs[@]}"; do
	read -r pkg pattern benchtime <<<"$r"
	echo "running $pkg -bench '$pattern' -benchtime $benchtime ..." >&2
	go test -run '^$' -bench "$pattern" -benchtime "$benchtime" -count 1 -timeout 60m "$pkg" | tee -a "$out" >&2
done

echo
printf '%-48s %14s  %s\n' BENCHMARK VALUE UNIT
printf '%-48s %14s  %s\n' --------- ----- ----
# A result line: BenchmarkName-N  iterations  value unit  value unit ...
awk '/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	for (i = 3; i + 1 <= NF; i += 2) {
		if ($(i+1) == "ns/op" && $i == 0) continue
		printf "%-48s %14s  %s\n", name, $i, $(i+1)
	}
}' "$out"
