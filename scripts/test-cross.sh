#!/usr/bin/env bash
# The same portable adaptor .wasm gives the same device status on every architecture:
# runs the standalone example (examples/standalone, dummy adaptor) with the static amd64
# limb natively and with the cross-built arm64 limb under qemu-aarch64, each on its own
# loopback port, waits until every device is Connected in both, and compares their
# status documents (values, phase and conditions; not times or counters).
# Usage: scripts/test-cross.sh [--armv7] [--worktree]
#   --armv7     also the armv7 limb (Pulley interpreter) under qemu-arm, on the
#               standalone and the Modbus examples (OCTOPUS_TEST_ARMV7=1 does the same)
#   --worktree  build the working tree instead of HEAD (scripts/build-cross.sh)
# OCTOPUS_CROSS_DEADLINE: seconds to wait for Connected devices per example (300).
# qemu-user comes from bookworm-backports (scripts/env.sh, ensure_qemu, says why).
# Timings under qemu are emulation, not performance.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ARMV7="${OCTOPUS_TEST_ARMV7:-0}"
BUILD_ARGS=()
for arg in "$@"; do
    case "$arg" in
    --armv7) ARMV7=1 ;;
    --worktree) BUILD_ARGS+=(--worktree) ;;
    *)
        echo "usage: $0 [--armv7] [--worktree]" >&2
        exit 2
        ;;
    esac
done
DEADLINE="${OCTOPUS_CROSS_DEADLINE:-300}"
ARCHES=(amd64 arm64)
[ "$ARMV7" = 1 ] && ARCHES+=(armv7)

started=$SECONDS
ensure_qemu
[ "$ARMV7" = 1 ] && ensure_peers
"$ROOT/scripts/build-adaptors.sh" >/dev/null
"$ROOT/scripts/build-cross.sh" --only limb "${BUILD_ARGS[@]}" "${ARCHES[@]}" >/dev/null
echo "== built in $((SECONDS - started)) s"
BIN="${OCTOPUS_BIN_DIR:-$CACHE/release/bin}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/octopus-cross.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts the ARCH limb on the DeviceLinks in LINKS (a folder), under qemu for ARM;
# sets URL to its admin endpoint.
start_limb() { # NAME ARCH LINKS
    local name="$1" arch="$2" links="$3" dir="$WORK/$1" port
    port="$(free_port)"
    mkdir -p "$dir/links"
    cp "$links"/*.yaml "$dir/links/"
    # Every shipped adaptor a link names (adaptors.edge.cattle.io/NAME -> adaptor_NAME.wasm),
    # the same bytes for every architecture.
    for a in $(sed -n 's|.*adaptors\.edge\.cattle\.io/\([a-z0-9-]*\).*|\1|p' "$links"/*.yaml | sort -u); do
        cp "$OCTOPUS_ADAPTORS_DIR/adaptor_${a//-/_}.wasm" "$dir/links/"
    done
    local run=("$BIN/$arch/limb")
    case "$arch" in
    arm64) run=("$QEMU_AARCH64" "${run[@]}") ;;
    armv7) run=("$QEMU_ARM" "${run[@]}") ;;
    esac
    LIMB_CACHE_DIR="$dir/cache" "${run[@]}" standalone "$dir/links" --listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
    PIDS+=($!)
    URL="http://127.0.0.1:$port"
}

# The execution mode each limb reports in /adaptors; fails if ARCH's is not EXPECTED.
check_mode() { # NAME URL EXPECTED
    local mode
    mode="$(python3 -c 'import json, sys, urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + "/adaptors", timeout=5))[0]["execution"])' "$2")"
    echo "   $1 runs adaptors with: $mode"
    case "$mode" in
    "$3"*) ;;
    *)
        echo "$1: expected execution mode $3*, got $mode" >&2
        exit 1
        ;;
    esac
}

expected_mode() { # ARCH
    case "$1" in
    amd64) echo "cranelift (x86_64)" ;;
    arm64) echo "cranelift (aarch64)" ;;
    armv7) echo "pulley32 interpreter" ;;
    esac
}

compare() { # EXAMPLE NAME=URL...
    local example="$1" t=$SECONDS
    shift
    echo "== $example: ${*%%=*}"
    python3 "$ROOT/scripts/compare-limbs.py" "$DEADLINE" "$@"
    echo "   compared in $((SECONDS - t)) s"
}

# The standalone example on every architecture at once.
args=()
for arch in "${ARCHES[@]}"; do
    start_limb "standalone-$arch" "$arch" "$ROOT/examples/standalone"
    args+=("$arch=$URL")
done
compare standalone "${args[@]}"
for a in "${args[@]}"; do
    check_mode "${a%%=*}" "${a#*=}" "$(expected_mode "${a%%=*}")"
done

# Modbus under Pulley, against the native limb: each limb has its own pymodbus slave
# (the example writes registers), on its own port, with the layout the example expects.
if [ "$ARMV7" = 1 ]; then
    args=()
    for arch in amd64 armv7; do
        port="$(free_port)"
        "$OCTOPUS_PEERS_PYTHON" -u "$ROOT/host/tests/peers/modbus_server.py" tcp 127.0.0.1 "$port" \
            >"$WORK/modbus-$arch.out" 2>"$WORK/modbus-$arch.log" &
        PIDS+=($!)
        for _ in $(seq 100); do
            grep -q '^READY' "$WORK/modbus-$arch.out" && break
            sleep 0.1
        done
        grep -q '^READY' "$WORK/modbus-$arch.out" || {
            echo "the Modbus slave did not start within 10 s: $(cat "$WORK/modbus-$arch.log")" >&2
            exit 1
        }
        mkdir -p "$WORK/modbus-links-$arch"
        sed "s/127\.0\.0\.1:15020/127.0.0.1:$port/" "$ROOT/examples/modbus/modbus-tcp.yaml" >"$WORK/modbus-links-$arch/modbus-tcp.yaml"
        start_limb "modbus-$arch" "$arch" "$WORK/modbus-links-$arch"
        args+=("$arch=$URL")
    done
    compare modbus "${args[@]}"
    check_mode armv7 "${args[1]#*=}" "$(expected_mode armv7)"
fi
echo "== done in $((SECONDS - started)) s"
