#!/usr/bin/env bash
# Density, per-poll overhead against native code, hot swap at scale and cold start of the
# limb, in process (release build); writes docs/benchmarks/density.md.
# DENSITY_ONLY=overhead,density,history,swap,cold runs a subset; DENSITY_ONLY=history alone
# (the dashboard's history at 10,000 devices; DENSITY_HISTORY_N for another count) writes
# docs/benchmarks/density-history.md instead.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
# 10,000 instances need about 70,000 memory mappings, more than Linux's default
# vm.max_map_count (65,530); raise it when allowed, as a node running that many devices must.
if [ "$(cat /proc/sys/vm/max_map_count)" -lt 262144 ]; then
    sysctl -qw vm.max_map_count=262144 2>/dev/null || echo "warning: vm.max_map_count is $(cat /proc/sys/vm/max_map_count); the 10,000-device scenario will run out of mappings" >&2
fi
mkdir -p docs/benchmarks
default_out="$ROOT/docs/benchmarks/density.md"
[ "${DENSITY_ONLY:-}" = history ] && default_out="$ROOT/docs/benchmarks/density-history.md"
DENSITY_OUT="$(realpath -m "${DENSITY_OUT:-$default_out}")" cargo bench --locked -p limb --bench density
