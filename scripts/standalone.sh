#!/usr/bin/env bash
# Runs the limb in standalone mode on examples/standalone: builds the adaptors and the
# limb, copies the adaptors the DeviceLinks in DIR name next to them, prints the
# dashboard's address and starts.
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
# The dashboard is at / of the admin listener (--listen, else LIMB_LISTEN, else the default).
listen="${LIMB_LISTEN:-127.0.0.1:8080}"
prev=""
for arg in "$@"; do
    case "$arg" in
        --listen=*) listen="${arg#--listen=}" ;;
        *) [ "$prev" = "--listen" ] && listen="$arg" ;;
    esac
    prev="$arg"
done
if [ "$listen" = "off" ]; then
    echo "dashboard: off (--listen off)" >&2
else
    echo "dashboard: http://${listen/#0.0.0.0/127.0.0.1}/" >&2
fi
exec "$CARGO_TARGET_DIR/debug/limb" standalone "$DIR" "$@"
