#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for N seconds each (default 10), starting from the
# committed corpora, and fails on the first crash, panic, timeout or out-of-memory.
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz once
# into the cache. New corpus entries go to a scratch folder, so the committed corpora
# only change when someone minimizes and commits them (see fuzz/README.md).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
seconds="${1:-10}"
NIGHTLY="${OCTOPUS_NIGHTLY:-nightly}"
FUZZ_FLAGS=(--sanitizer none)

if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$NIGHTLY" --profile minimal
fi
if [ ! -x "$CACHE/tools/bin/cargo-fuzz" ]; then
    cargo install cargo-fuzz --locked --root "$CACHE/tools"
fi
export PATH="$CACHE/tools/bin:$PATH"
# Its own target folder: instrumented builds share nothing with the normal ones.
export CARGO_TARGET_DIR="$CACHE/fuzz-target"

cd "$ROOT/fuzz"
cargo "+$NIGHTLY" fuzz build "${FUZZ_FLAGS[@]}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo "+$NIGHTLY" fuzz list); do
    echo "== fuzz $target (${seconds} s)"
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    if ! cargo "+$NIGHTLY" fuzz run "${FUZZ_FLAGS[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target failed; the input is under fuzz/artifacts/$target"
        exit 1
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$log" || true
done
