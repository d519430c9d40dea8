#!/usr/bin/env bash
# Runs the limb in standalone mode on examples/standalone: builds the adaptors and the
# limb, copies the dummy adaptor next to the example DeviceLinks, and starts.
# Usage: scripts/standalone.sh [DIR] [limb standalone options, e.g. --listen 127.0.0.1:9090]
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
cargo build --locked -p limb
DIR="$ROOT/examples/standalone"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    DIR="$1"
    shift
fi
cp "$OCTOPUS_ADAPTORS_DIR/adaptor_dummy.wasm" "$DIR/"
exec "$CARGO_TARGET_DIR/debug/limb" standalone "$DIR" "$@"
