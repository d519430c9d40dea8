#!/usr/bin/env bash
# Runs the limb in standalone mode on examples/standalone: builds the adaptors and the
# limb, copies the adaptors the DeviceLinks in DIR name next to them, and starts.
# Usage: scripts/standalone.sh [DIR] [limb standalone options, e.g. --listen 127.0.0.1:9090]
#   scripts/standalone.sh examples/modbus     # against a local Modbus slave (see the YAML)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
cargo build --locked -p limb
DIR="$ROOT/examples/standalone"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    DIR="$1"
    shift
fi
# Every shipped adaptor a link in DIR names (adaptors.edge.cattle.io/NAME -> adaptor_NAME.wasm).
for name in $(sed -n 's|.*adaptors\.edge\.cattle\.io/\([a-z0-9-]*\).*|\1|p' "$DIR"/*.yaml | sort -u); do
    wasm="$OCTOPUS_ADAPTORS_DIR/adaptor_${name//-/_}.wasm"
    if [ -f "$wasm" ]; then cp "$wasm" "$DIR/"; fi
done
exec "$CARGO_TARGET_DIR/debug/limb" standalone "$DIR" "$@"
