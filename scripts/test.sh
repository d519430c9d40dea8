#!/usr/bin/env bash
# The whole test suite: formatting, lints, adaptor builds, unit tests of guests and
# host, and the end-to-end tests that run real components in the limb.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_toolchain
ensure_peers
cd "$ROOT"
started=$SECONDS
echo "== fmt"
cargo fmt --all --check
(cd adaptors-wasm && cargo fmt --all --check)
echo "== adaptors"
"$ROOT/scripts/build-adaptors.sh"
echo "== adaptors in every guest language (toolchains installed on first use)"
"$ROOT/scripts/build-languages.sh"
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
(cd adaptors-wasm && CARGO_TARGET_DIR="$ADAPTORS_TARGET" cargo clippy --release --target wasm32-wasip2 --locked -- -D warnings)
echo "== guest unit tests"
(cd adaptors-wasm && CARGO_TARGET_DIR="$ADAPTORS_TARGET" cargo test --locked -p adaptor-dummy -p adaptor-hostile -p adaptor-probe -p adaptor-modbus -p adaptor-mqtt -p octopus-adaptor-sdk -p adaptor-counter-rust -p adaptor-registers-rust --target "$(rustc -vV | sed -n 's/^host: //p')")
echo "== test API server"
"$ROOT/scripts/build-kube.sh"
echo "== CRD and manifest drift"
cargo run --locked -q -p crds --bin crdgen -- --check
cargo run --locked -q -p xtask -- manifests --check
echo "== adaptor ConfigMaps"
"$ROOT/scripts/render-adaptors.sh" "$CACHE/rendered-adaptors"
echo "== fuzz targets (briefly; scripts/fuzz.sh N runs them longer)"
"$ROOT/scripts/fuzz.sh" 10
echo "== workspace tests"
cargo test --workspace --locked
echo "== containment suite (release build of the limb, run as a process beside a healthy neighbour)"
cargo test --release --locked -p limb --no-default-features --test containment
echo "== done in $((SECONDS - started)) s"
