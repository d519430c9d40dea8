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
echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
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
echo "== static release binaries: amd64 (limb, brain, octopus) and the arm64 limb"
"$ROOT/scripts/build-cross.sh" amd64
"$ROOT/scripts/build-cross.sh" --only limb arm64
echo "== workspace tests (the e2e harness runs the limb and brain binaries cargo builds here)"
cargo build --locked -p limb -p brain
cargo test --workspace --locked
echo "== containment suite (the shipped static limb, run as a process beside a healthy neighbour)"
OCTOPUS_LIMB_BIN="$CACHE/release/bin/amd64/limb" cargo test --locked -p limb --test containment
echo "== release images: reproducible, pinned in the manifests, importable, run in runc"
"$ROOT/scripts/test-images.sh" --skip-build --arch amd64
echo "== the same adaptors on arm64 under qemu-user give the same device status"
"$ROOT/scripts/test-cross.sh"
echo "== done in $((SECONDS - started)) s"
