#!/usr/bin/env bash
# Builds the Rust counter template and registers adaptor:
#   build.sh OUT_DIR  ->  OUT_DIR/adaptor_counter_rust.wasm, OUT_DIR/adaptor_registers_rust.wasm
# Both crates are members of the adaptors-wasm workspace, so they share its lock file,
# release profile and target folder with the other guest crates (no extra scratch).
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/env.sh"
source "$ROOT/scripts/toolchains.sh"
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
mkdir -p "$1"
OUT_DIR="$(cd "$1" && pwd)"
# rustc's wasm32-wasip2 target links components itself; the bindings come from the
# wit-bindgen crate inside the SDK, so none of the need_* tools is required.
ensure_toolchain
cd "$ROOT/adaptors-wasm"
CARGO_TARGET_DIR="$ADAPTORS_TARGET" cargo build --release --target wasm32-wasip2 --locked \
    -p adaptor-counter-rust -p adaptor-registers-rust
for kind in counter registers; do
    cp "$ADAPTORS_TARGET/wasm32-wasip2/release/adaptor_${kind}_rust.wasm" "$OUT_DIR/"
done
