# Shared settings for the scripts: builds are cached outside the repository so a fresh
# clone reuses them (OCTOPUS_CACHE, default ~/.cache/octopus).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${OCTOPUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/octopus}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
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

# Real peers the end-to-end tests talk to, from Debian's packages.
ensure_peers() {
    local missing=()
    command -v socat >/dev/null || missing+=(socat)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}
