#!/usr/bin/env bash
# Builds every adaptor component under adaptors-wasm/ and collects them, plus the dummy
# and hostile adaptors' variants (for hot-swap and containment tests), in
# $OCTOPUS_ADAPTORS_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_toolchain
cd "$ROOT/adaptors-wasm"
CARGO_TARGET_DIR="$ADAPTORS_TARGET" cargo build --release --target wasm32-wasip2 --locked
cp "$ADAPTORS_TARGET"/wasm32-wasip2/release/*.wasm "$OCTOPUS_ADAPTORS_DIR/"
# Variants of the dummy adaptor for hot-swap tests, built one after another in their
# own target folder (the output name is the same for all of them).
for variant in v2 broken-restore broken-poll; do
    CARGO_TARGET_DIR="$ADAPTORS_TARGET-variants" cargo build --release --target wasm32-wasip2 --locked -p adaptor-dummy --features "$variant"
    cp "$ADAPTORS_TARGET-variants/wasm32-wasip2/release/adaptor_dummy.wasm" "$OCTOPUS_ADAPTORS_DIR/adaptor_dummy_${variant//-/_}.wasm"
done
# The GPIO adaptor's v2 (hot swaps on the real kernel, scripts/test-gpio.sh).
CARGO_TARGET_DIR="$ADAPTORS_TARGET-variants" cargo build --release --target wasm32-wasip2 --locked -p adaptor-gpio --features v2
cp "$ADAPTORS_TARGET-variants/wasm32-wasip2/release/adaptor_gpio.wasm" "$OCTOPUS_ADAPTORS_DIR/adaptor_gpio_v2.wasm"
# The hostile adaptor's variants: v2 (hot swaps of a hostile device) and huge-describe
# (a 4 MiB version string, for the release containment suite, host/tests/containment).
for variant in v2 huge-describe; do
    CARGO_TARGET_DIR="$ADAPTORS_TARGET-variants" cargo build --release --target wasm32-wasip2 --locked -p adaptor-hostile --features "$variant"
    cp "$ADAPTORS_TARGET-variants/wasm32-wasip2/release/adaptor_hostile.wasm" "$OCTOPUS_ADAPTORS_DIR/adaptor_hostile_${variant//-/_}.wasm"
done
# The OPC UA adaptor's v2 (a hot swap carrying its state to another version).
CARGO_TARGET_DIR="$ADAPTORS_TARGET-variants" cargo build --release --target wasm32-wasip2 --locked -p adaptor-opcua --features v2
cp "$ADAPTORS_TARGET-variants/wasm32-wasip2/release/adaptor_opcua.wasm" "$OCTOPUS_ADAPTORS_DIR/adaptor_opcua_v2.wasm"
ls -l "$OCTOPUS_ADAPTORS_DIR"
