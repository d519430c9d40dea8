#!/usr/bin/env bash
# Cluster benchmarks of the limb (release build) on a real kube-apiserver: status
# delivery against the API server's own write capacity, and connect rate; writes
# docs/benchmarks/cluster.md. Knobs: BENCH_CLUSTER_SIZES (default 100,1000),
# BENCH_CLUSTER_SECS (delivery window, default 60), BENCH_CAPACITY_SECS (default 15),
# BENCHMARKS_CLUSTER_OUT (where the table goes).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build-adaptors.sh" >/dev/null
"$ROOT/scripts/build-kube.sh"
cd "$ROOT"
cargo build --release --locked -p limb -p brain
mkdir -p "$ROOT/docs/benchmarks"
# The bench runs in host/: a relative output path is taken from the repository root.
OUT="$(realpath -m "${BENCHMARKS_CLUSTER_OUT:-$ROOT/docs/benchmarks/cluster.md}")"
LIMB_BIN="$CARGO_TARGET_DIR/release/limb" BRAIN_BIN="$CARGO_TARGET_DIR/release/brain" \
    BENCHMARKS_CLUSTER_OUT="$OUT" \
    cargo bench --locked -p limb --bench cluster
