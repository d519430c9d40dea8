#!/usr/bin/env bash
# Cluster benchmarks of the limb (release build) on a real kube-apiserver: status
# delivery against the API server's own write capacity (on plain objects and on objects
# shaped like the limb's instances), connect time against issue 29's bound, memory and
# CPU of limb, brain, API server and etcd, and the brain's re-validation after a model
# CRD changes; writes docs/benchmarks/cluster.md.
# Knobs: BENCH_CLUSTER_SIZES (default 100,1000), BENCH_CLUSTER_RUNS (default 1, each on
# a fresh API server), BENCH_CLUSTER_SECS (delivery window, default 60),
# BENCH_CAPACITY_SECS (default 15), BENCH_CAPACITY_OBJECTS (default: the size, at most
# 1,000), BENCH_CLUSTER_LIMB_ARGS (extra arguments of `limb cluster`, e.g.
# "--status-flush 500ms"), BENCH_CLUSTER_REVALIDATE (0: skip), BENCHMARKS_CLUSTER_OUT
# (where the table goes).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_toolchain
# Only the dummy adaptor is used.
(cd "$ROOT/adaptors-wasm" && CARGO_TARGET_DIR="$ADAPTORS_TARGET" cargo build --release --target wasm32-wasip2 --locked -p adaptor-dummy)
cp "$ADAPTORS_TARGET/wasm32-wasip2/release/adaptor_dummy.wasm" "$OCTOPUS_ADAPTORS_DIR/"
"$ROOT/scripts/build-kube.sh"
# 10,000 devices on one limb need more memory mappings than the default 65,530, as on
# a node running that many (scripts/bench-density.sh does the same).
if [ "$(cat /proc/sys/vm/max_map_count)" -lt 262144 ]; then
    sysctl -qw vm.max_map_count=262144 2>/dev/null || echo "warning: vm.max_map_count is $(cat /proc/sys/vm/max_map_count); 10,000 devices will run out of mappings" >&2
fi
cd "$ROOT"
cargo build --release --locked -p limb -p brain
mkdir -p "$ROOT/docs/benchmarks"
# The bench runs in host/: a relative output path is taken from the repository root.
OUT="$(realpath -m "${BENCHMARKS_CLUSTER_OUT:-$ROOT/docs/benchmarks/cluster.md}")"
# The target dir is shared by every checkout: the run keeps its own copy of the binaries.
BINS="$(mktemp -d "${TMPDIR:-/tmp}/octopus-bench-cluster.XXXXXX")"
trap 'rm -rf "$BINS"' EXIT
cp "$CARGO_TARGET_DIR/release/limb" "$CARGO_TARGET_DIR/release/brain" "$BINS/"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
LIMB_BIN="$BINS/limb" BRAIN_BIN="$BINS/brain" \
    BENCHMARKS_CLUSTER_OUT="$OUT" \
    cargo bench --locked -p limb --bench cluster
