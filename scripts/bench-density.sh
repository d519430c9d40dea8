#!/usr/bin/env bash
# Density, per-poll overhead against native code, hot swap at scale and cold start of the
# limb, in process (release build); writes docs/benchmarks/density.md.
# DENSITY_ONLY=overhead,density,swap,cold runs a subset.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
mkdir -p docs/benchmarks
DENSITY_OUT="${DENSITY_OUT:-$ROOT/docs/benchmarks/density.md}" cargo bench --locked -p limb --bench density
