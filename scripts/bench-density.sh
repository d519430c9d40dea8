#!/usr/bin/env bash
# Density, per-poll overhead against native code, hot swap at scale and cold start of the
# limb, in process (release build); writes docs/benchmarks/density.md.
# DENSITY_ONLY=overhead,density,swap,cold runs a subset.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
# 10,000 instances need about 70,000 memory mappings, more than Linux's default
# vm.max_map_count (65,530); raise it when allowed, as a node running that many devices must.
if [ "$(cat /proc/sys/vm/max_map_count)" -lt 262144 ]; then
    sysctl -qw vm.max_map_count=262144 2>/dev/null || echo "warning: vm.max_map_count is $(cat /proc/sys/vm/max_map_count); the 10,000-device scenario will run out of mappings" >&2
fi
mkdir -p docs/benchmarks
DENSITY_OUT="$(realpath -m "${DENSITY_OUT:-$ROOT/docs/benchmarks/density.md}")" cargo bench --locked -p limb --bench density
