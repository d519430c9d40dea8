# Shared settings for the scripts: builds are cached outside the repository so a fresh
# clone reuses them (OCTOPUS_CACHE, default ~/.cache/octopus).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${OCTOPUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/octopus}"
# One target dir serves every checkout. Cargo judges freshness by file times, with paths
# relative to the workspace, so a checkout whose files are older than another checkout's
# last build reuses that build: tests find repository files at run time for that reason
# (brain/tests/cluster/repo.rs). A fresh clone's files are all new, so it rebuilds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
# Incremental artifacts grow by gigabytes per source path and help only edit loops.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
ADAPTORS_TARGET="$CACHE/adaptors-target"
export OCTOPUS_ADAPTORS_DIR="${OCTOPUS_ADAPTORS_DIR:-$CACHE/adaptors}"
export LIMB_CACHE_DIR="${LIMB_CACHE_DIR:-$CACHE/limb}"
mkdir -p "$CACHE" "$OCTOPUS_ADAPTORS_DIR"

# The toolchain file pins Rust and lists the wasm target; install it explicitly in case
# rustup's auto-install is off on this machine.
ensure_toolchain() {
    local tc
    tc="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")"
    if ! rustup target list --installed --toolchain "$tc" 2>/dev/null | grep -q '^wasm32-wasip2$'; then
        rustup toolchain install "$tc" --profile minimal --component rustfmt,clippy --target wasm32-wasip2
    fi
}

# Real peers the end-to-end tests talk to: socat (pty pairs) and mbpoll (an independent
# Modbus master) from Debian's packages, and pymodbus (the Modbus TCP/RTU slave) in a venv
# under the cache. Idempotent; exports OCTOPUS_PEERS_PYTHON for the tests.
PYMODBUS_VERSION=3.16.1
ensure_peers() {
    local missing=()
    command -v socat >/dev/null || missing+=(socat)
    command -v mbpoll >/dev/null || missing+=(mbpoll)
    # mosquitto (the MQTT broker, in /usr/sbin) and its clients mosquitto_sub/_pub.
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    local venv="$CACHE/peers/venv"
    if ! "$venv/bin/python" -c "import importlib.metadata as m, serial, sys; sys.exit(m.version('pymodbus') != '$PYMODBUS_VERSION')" 2>/dev/null; then
        echo "installing pymodbus $PYMODBUS_VERSION in $venv"
        mkdir -p "$CACHE/peers"
        [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "pymodbus[serial]==$PYMODBUS_VERSION"
    fi
    export OCTOPUS_PEERS_PYTHON="$venv/bin/python"
}
