# Shared settings for the scripts: builds are cached outside the repository so a fresh
# clone reuses them (OCTOPUS_CACHE, default ~/.cache/octopus).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${OCTOPUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/octopus}"
# One target dir serves every checkout. Cargo judges freshness by file times, with paths
# relative to the workspace, so a checkout whose files are older than another checkout's
# last build reuses that build: tests find repository files at run time for that reason
# (tests/src/paths.rs). A fresh clone's files are all new, so it rebuilds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
# Incremental artifacts grow by gigabytes per source path and help only edit loops.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Another checkout working beside this one (a second worktree) sets its own.
ADAPTORS_TARGET="${OCTOPUS_ADAPTORS_TARGET:-$CACHE/adaptors-target}"
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
# Modbus master) from Debian's packages, and pymodbus (the Modbus TCP/RTU slave) and
# asyncua (the OPC UA server and client) in a venv under the cache. Idempotent; exports
# OCTOPUS_PEERS_PYTHON for the tests.
PYMODBUS_VERSION=3.16.1
ASYNCUA_VERSION=2.1.0
BUMBLE_VERSION=0.0.236
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
    if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('asyncua') != '$ASYNCUA_VERSION')" 2>/dev/null; then
        echo "installing asyncua $ASYNCUA_VERSION in $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "asyncua==$ASYNCUA_VERSION"
    fi
    # Bumble: virtual BLE controllers and the GATT peripherals of the BLE tests.
    if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('bumble') != '$BUMBLE_VERSION')" 2>/dev/null; then
        echo "installing bumble $BUMBLE_VERSION in $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "bumble==$BUMBLE_VERSION"
    fi
    export OCTOPUS_PEERS_PYTHON="$venv/bin/python"
}

# Installs what a Debian package list names, if a command is missing. Idempotent.
_apt_install() { # [-t RELEASE] package...
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "$@"
}

# Headless Chromium (Debian's package) for the dashboard's browser tests
# (tests/e2e/dashboard.rs drives it over the DevTools protocol). Idempotent; exports
# OCTOPUS_CHROMIUM for the tests.
ensure_chromium() {
    if ! command -v chromium >/dev/null; then
        echo "installing chromium (the dashboard's browser tests)" >&2
        _apt_install chromium fonts-dejavu-core >&2
    fi
    OCTOPUS_CHROMIUM="$(command -v chromium)"
    export OCTOPUS_CHROMIUM
}

# Cross toolchains for scripts/build-cross.sh (ARCH: amd64 arm64 armv7). Idempotent.
# - Rust: the musl targets of the pinned toolchain. armv7-unknown-linux-musleabihf has no
#   rust-std on the mirror this machine reaches (rustup says "unavailable for download"
#   for 1.95.0 and nightly alike), so armv7 builds std from the pinned toolchain's
#   rust-src (cross_env sets that up).
# - C (ring): Debian's gcc cross compilers, also used as linkers (the musl crt objects
#   and libc come with Rust's self-contained musl targets, so the glibc-targeting gcc
#   only drives the link); musl-gcc (musl-tools) for amd64. zig cc would also do, but it
#   needs wrapper scripts for cargo and starts a Python interpreter per call (it is
#   installed from PyPI here); the Debian packages are one apt-get.
ensure_cross() { # ARCH...
    local tc missing=() targets=()
    tc="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")"
    for arch in "$@"; do
        case "$arch" in
        amd64)
            command -v musl-gcc >/dev/null || missing+=(musl-tools)
            targets+=(x86_64-unknown-linux-musl)
            ;;
        arm64)
            command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
            targets+=(aarch64-unknown-linux-musl)
            ;;
        armv7)
            command -v arm-linux-gnueabihf-gcc >/dev/null || missing+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
            ;;
        esac
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        _apt_install "${missing[@]}" >&2
    fi
    local installed
    installed="$(rustup target list --installed --toolchain "$tc" 2>/dev/null)"
    for t in "${targets[@]}"; do
        grep -qx "$t" <<<"$installed" || rustup target add --toolchain "$tc" "$t" >&2
    done
    if [[ " $* " == *" armv7 "* ]] && ! rustup component list --installed --toolchain "$tc" 2>/dev/null | grep -q '^rust-src'; then
        rustup component add --toolchain "$tc" rust-src >&2
    fi
}

# Compiler and linker settings of one ARCH for cargo (per target triple, so the native
# builds keep theirs).
cross_env() { # ARCH
    CROSS_RUSTFLAGS=""
    CROSS_CARGO_ARGS=""
    CROSS_BOOTSTRAP=""
    case "$1" in
    amd64)
        export CC_x86_64_unknown_linux_musl=musl-gcc
        ;;
    arm64)
        export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
        export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
        ;;
    armv7)
        # No prebuilt std for this target here (see ensure_cross): cargo builds it from
        # the pinned toolchain's rust-src (-Zbuild-std, which a stable cargo accepts
        # with RUSTC_BOOTSTRAP=1; only this target's build sees it). Without Rust's
        # self-contained musl objects, the link needs a musl libc and libunwind for
        # armv7, which zig cc builds from its bundled sources: it is the linker.
        export CC_armv7_unknown_linux_musleabihf=arm-linux-gnueabihf-gcc
        export AR_armv7_unknown_linux_musleabihf=arm-linux-gnueabihf-ar
        export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER
        CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER="$(zig_linker arm-linux-musleabihf generic+v7a+vfp3d16+thumb2)"
        CROSS_RUSTFLAGS="-C link-self-contained=no"
        CROSS_CARGO_ARGS="-Zbuild-std"
        CROSS_BOOTSTRAP=1
        ;;
    esac
}

# A linker script for cargo: zig cc for TARGET and CPU (zig from PyPI, toolchains.sh).
zig_linker() { # TARGET CPU
    source "$ROOT/scripts/toolchains.sh"
    need_zig >&2
    local w="$CACHE/cross-bin/zig-cc-$1"
    mkdir -p "$CACHE/cross-bin"
    cat >"$w.tmp" <<WRAP
#!/bin/sh
# Written by scripts/env.sh (zig_linker): zig cc as cargo's linker for $1.
export ZIG_GLOBAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR"
exec $ZIG cc -target $1 -mcpu=$2 "\$@"
WRAP
    chmod +x "$w.tmp"
    mv "$w.tmp" "$w"
    echo "$w"
}

# qemu-user from bookworm-backports (10.x), to run the arm64 and armv7 limbs on this
# machine. Exports QEMU_AARCH64 and QEMU_ARM. Idempotent.
# Why not bookworm's own qemu-user 7.2 (measured 2026-12-07 with the static amd64 limb
# under qemu-x86_64 on the standalone example, the same user-mode memory code as
# qemu-aarch64/qemu-arm): with on-demand instance allocation both versions run it and
# every device connects; with the pooling allocator (`--pooling on`, which reserves
# 16 TiB of address space for 1,024 instances) 7.2 grew to 18 GB resident while mapping
# the reservation and was killed by the kernel's OOM killer, while 10.0.2 started the
# limb and connected every device in 8 s. A limb configured for pooling must work under
# emulation too, so the backport is used.
QEMU_MIN_MAJOR=10
_ensure_backports() {
    local list=/etc/apt/sources.list.d/bookworm-backports.list
    if ! grep -qs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/*; then
        echo "adding bookworm-backports to apt's sources ($list)" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $sudo tee "$list" >/dev/null
    fi
}

# What the GPIO guest needs: the tools that build its kernel (scripts/gpio-kernel.sh),
# and what scripts/test-gpio.sh boots it with: qemu-system-x86_64, from
# bookworm-backports like qemu-user (bookworm's 7.2 cannot be installed beside the 10.x
# qemu-utils and qemu-user: apt reports conflicting qemu-system-common/qemu-system-data),
# busybox-static for the initramfs and cpio to pack it. Idempotent; installs nothing
# when all are there, so the kernel build can call it in the background.
ensure_gpio_guest() {
    local missing=() tool
    for tool in flex:flex bison:bison bc:bc make:make gcc:gcc xz:xz-utils perl:perl cpio:cpio; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    [ -e /usr/include/libelf.h ] || missing+=(libelf-dev)
    [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
    if [ ${#missing[@]} -gt 0 ]; then
        _ensure_backports
        echo "installing ${missing[*]} (qemu from bookworm-backports)" >&2
        _apt_install -t bookworm-backports "${missing[@]}" >&2
    fi
}

ensure_qemu() {
    local v
    v="$(qemu-aarch64 --version 2>/dev/null | sed -n 's/^qemu-aarch64 version \([0-9]*\)\..*/\1/p')" || v=""
    if [ -z "$v" ] || [ "$v" -lt "$QEMU_MIN_MAJOR" ] || ! command -v qemu-arm >/dev/null; then
        _ensure_backports
        echo "installing qemu-user from bookworm-backports" >&2
        _apt_install -t bookworm-backports qemu-user >&2
    fi
    QEMU_AARCH64="$(command -v qemu-aarch64)"
    QEMU_ARM="$(command -v qemu-arm)"
    export QEMU_AARCH64 QEMU_ARM
}
