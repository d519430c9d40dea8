#!/usr/bin/env bash
# The whole test suite: formatting, lints, adaptor builds, unit tests of guests and
# host, and the end-to-end tests that run real components in the limb.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_toolchain
ensure_peers
# Headless Chromium for the dashboard's browser test (tests/e2e/dashboard.rs).
ensure_chromium
cd "$ROOT"
started=$SECONDS
# The static release binaries (amd64 limb and brain, arm64 limb) build in the background
# at the lowest CPU and I/O priority, from here until the suites that run them: they take
# the cores the foreground leaves idle (downloads, waits in the end-to-end tests); warm,
# they are done before the foreground needs them (docs/benchmarks/release.md). So do the
# GPIO guest's kernel and static test binaries. Their toolchains install first, in the
# foreground, so that no two apt-get runs meet.
ensure_cross amd64 arm64
ensure_qemu
ensure_gpio_guest
CROSS_LOG="$(mktemp "${TMPDIR:-/tmp}/octopus-cross-build.XXXXXX")"
setsid nice -n 19 ionice -c3 bash -c '"$1"/scripts/build-cross.sh --only limb --only brain amd64 && "$1"/scripts/test-gpio.sh --build-only && "$1"/scripts/build-cross.sh --only limb arm64' \
    _ "$ROOT" >"$CROSS_LOG" 2>&1 &
CROSS_PID=$!
# Its own session, so that a failing run stops the whole build, cargo and rustc included.
trap 'kill -- -"$CROSS_PID" 2>/dev/null || true' EXIT
echo "== fmt"
cargo fmt --all --check
(cd adaptors-wasm && cargo fmt --all --check)
echo "== adaptors"
"$ROOT/scripts/build-adaptors.sh"
echo "== adaptors in every guest language (toolchains installed on first use)"
"$ROOT/scripts/build-languages.sh"
echo "== the JavaScript components inside Node (their exports, with the limb's imports faked)"
"$ROOT/adaptors-wasm/languages/javascript/test.sh"
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The GPIO guest's tests (a target with `test = false`, which --all-targets skips).
cargo clippy -p limb --no-default-features --test gpio_sim --locked -- -D warnings
(cd adaptors-wasm && CARGO_TARGET_DIR="$ADAPTORS_TARGET" cargo clippy --release --target wasm32-wasip2 --locked -- -D warnings)
echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== guest unit tests"
(cd adaptors-wasm && CARGO_TARGET_DIR="$ADAPTORS_TARGET" cargo test --locked -p adaptor-dummy -p adaptor-hostile -p adaptor-probe -p adaptor-modbus -p adaptor-mqtt -p adaptor-gpio -p adaptor-opcua -p adaptor-ble -p octopus-adaptor-sdk -p adaptor-counter-rust -p adaptor-registers-rust --target "$(rustc -vV | sed -n 's/^host: //p')")
echo "== test API server"
"$ROOT/scripts/build-kube.sh"
echo "== CRD and manifest drift"
cargo run --locked -q -p crds --bin crdgen -- --check
cargo run --locked -q -p xtask -- manifests --check
echo "== adaptor ConfigMaps"
"$ROOT/scripts/render-adaptors.sh" "$CACHE/rendered-adaptors"
echo "== workspace tests (the e2e harness runs the limb and brain binaries cargo builds here)"
cargo build --locked -p limb -p brain
cargo test --workspace --locked
echo "== static release binaries: amd64 (limb, brain), the GPIO guest, the arm64 limb (built in the background)"
if ! wait "$CROSS_PID"; then
    cat "$CROSS_LOG"
    echo "the static release builds failed" >&2
    exit 1
fi
grep -E '^(==|   built in)' "$CROSS_LOG" || true
rm -f "$CROSS_LOG"
echo "== containment suite (the shipped static limb, run as a process beside a healthy neighbour)"
OCTOPUS_LIMB_BIN="$CACHE/release/bin/amd64/limb" cargo test --locked -p limb --test containment
echo "== GPIO on a real kernel: the limb's cdev backend on gpio-sim in a qemu guest (TCG)"
"$ROOT/scripts/test-gpio.sh"
echo "== release images: reproducible, pinned in the manifests, importable, run in runc"
"$ROOT/scripts/test-images.sh" --skip-build --arch amd64
echo "== the same adaptors on arm64 under qemu-user give the same device status"
"$ROOT/scripts/test-cross.sh"
echo "== done in $((SECONDS - started)) s"
