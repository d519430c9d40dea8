#!/usr/bin/env bash
# Builds static release binaries of limb, brain and octopus for Linux on amd64, arm64 and
# armv7 from one commit, into ${OCTOPUS_BIN_DIR:-$CACHE/release/bin}/<arch>/<binary>.
# Usage: scripts/build-cross.sh [--only limb|brain|octopus]... [--worktree] [ARCH...]
#   ARCH: amd64 arm64 armv7 (default: all three)
#   --only NAME  build only these binaries (repeatable; default all three)
#   --worktree   build the working tree's tracked files (uncommitted edits included)
#                instead of HEAD; meant for development, not for releases
# Prints the commit it built; writes <arch>/BUILD (commit, toolchain) beside the binaries.
#
# Why it is built this way:
# - musl targets, statically linked: the images hold nothing but the binary, CA
#   certificates and passwd/group. Static glibc would need glibc's NSS modules at run time
#   for getaddrinfo, and the limb resolves broker and API server names.
# - Reproducible: the commit is exported with `git archive` to one fixed path under the
#   cache and built from there, so the clone's path never reaches the binary (panic
#   locations, debug paths); the registry's path is remapped too. SOURCE_DATE_EPOCH is
#   the commit time, so that two builds of one commit give identical bytes (not yet
#   checked by a test: the image test checks digests from the same binaries).
# - One pipeline per architecture ($CACHE/cross/<arch>/: the export, the target dir and a
#   lock): the export lives at another path than the checkouts and these builds use
#   release settings and per-target flags, so sharing $CACHE/target would make cargo
#   rebuild the test builds' crates back and forth; and with one export per architecture
#   a long armv7 build does not hold up an amd64 one (they only share the host's build
#   scripts and proc macros, which build unoptimised in a minute).
# - Cross C compilers (ring has C and assembly) and linkers are Debian's gcc cross
#   toolchains; see ensure_cross in scripts/env.sh for what is installed and why.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ARCHES=()
ONLY=()
WORKTREE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --only)
        ONLY+=("$2")
        shift 2
        ;;
    --worktree)
        WORKTREE=1
        shift
        ;;
    amd64 | arm64 | armv7)
        ARCHES+=("$1")
        shift
        ;;
    *)
        echo "usage: $0 [--only limb|brain|octopus]... [--worktree] [amd64|arm64|armv7]..." >&2
        exit 2
        ;;
    esac
done
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64 armv7)
[ ${#ONLY[@]} -gt 0 ] || ONLY=(limb brain octopus)

BIN_DIR="${OCTOPUS_BIN_DIR:-$CACHE/release/bin}"

ensure_cross "${ARCHES[@]}"

# The commit to build: HEAD, or with --worktree a commit object of the working tree's
# tracked files (`git stash create` makes one without touching the checkout).
cd "$ROOT"
REV="$(git rev-parse HEAD)"
if [ "$WORKTREE" = 1 ]; then
    stash="$(git stash create)"
    [ -z "$stash" ] || REV="$stash"
fi
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct "$REV")"

# Exports REV to $SRC once per commit. Extracted files get the extraction time (tar -m),
# never the commit's: cargo judges freshness by mtime, and an older commit's time would
# make a newer commit's build look fresh. An unchanged commit is not re-extracted, so a
# warm build is a no-op.
export_rev() {
    if [ "$(cat "$SRC/.octopus-rev" 2>/dev/null)" != "$REV" ]; then
        rm -rf "$SRC.new"
        mkdir -p "$SRC.new"
        git -C "$ROOT" archive --format=tar "$REV" | tar -x -m -C "$SRC.new"
        echo "$REV" >"$SRC.new/.octopus-rev"
        rm -rf "$SRC"
        mv "$SRC.new" "$SRC"
    fi
}

triple_of() {
    case "$1" in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    armv7) echo armv7-unknown-linux-musleabihf ;;
    esac
}

# Crate and binary of each name (`octopus` is the octopus-cli package's bin).
PKGS=()
BINS=()
for name in "${ONLY[@]}"; do
    case "$name" in
    limb) PKGS+=(-p limb) ;;
    brain) PKGS+=(-p brain) ;;
    octopus) PKGS+=(-p octopus-cli) ;;
    *)
        echo "unknown binary $name (limb, brain, octopus)" >&2
        exit 2
        ;;
    esac
    BINS+=(--bin "$name")
done

CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
SYSROOT="$(rustc --print sysroot)"
# Release settings for these builds only (env, so no file in the export changes):
# symbols stripped, since the images ship the binary alone and a backtrace's file:line
# needs no symbol table.
export CARGO_PROFILE_RELEASE_STRIP=symbols

for arch in "${ARCHES[@]}"; do
    # One build per architecture at a time: a run for another commit would replace the
    # sources under a running build.
    mkdir -p "$CACHE/cross/$arch"
    exec 9>"$CACHE/cross/$arch.lock"
    flock 9
    SRC="$CACHE/cross/$arch/src"
    export CARGO_TARGET_DIR="$CACHE/cross/$arch/target"
    export_rev
    cd "$SRC"
    triple="$(triple_of "$arch")"
    T="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
    t="${triple//-/_}"
    cross_env "$arch"
    # Per-target flags: they reach only this triple's crates, never the host build
    # scripts or the native test builds.
    flags="--remap-path-prefix=$SRC=/octopus --remap-path-prefix=$CARGO_HOME_DIR=/cargo --remap-path-prefix=$SYSROOT=/rust -C target-feature=+crt-static $CROSS_RUSTFLAGS"
    export "CARGO_TARGET_${T}_RUSTFLAGS=$flags"
    echo "== $arch ($triple) at ${REV:0:12}" >&2
    started=$SECONDS
    boot=()
    [ -z "$CROSS_BOOTSTRAP" ] || boot=(RUSTC_BOOTSTRAP=1)
    # shellcheck disable=SC2086 # CROSS_CARGO_ARGS is a list of words
    env "${boot[@]}" cargo build --release --locked --target "$triple" "${PKGS[@]}" "${BINS[@]}" $CROSS_CARGO_ARGS
    echo "   built in $((SECONDS - started)) s" >&2
    out="$BIN_DIR/$arch"
    mkdir -p "$out"
    for name in "${ONLY[@]}"; do
        # Copy, then rename, so a reader never sees a half-written binary.
        cp "$CARGO_TARGET_DIR/$triple/release/$name" "$out/.$name.tmp"
        mv "$out/.$name.tmp" "$out/$name"
    done
    {
        echo "commit $REV"
        echo "target $triple"
        echo "rustc $(rustc -V)"
        [ -z "$CROSS_CARGO_ARGS" ] || echo "cargo $CROSS_CARGO_ARGS"
    } >"$out/BUILD"
    unset "CARGO_TARGET_${T}_RUSTFLAGS" "CC_$t" "AR_$t" "CARGO_TARGET_${T}_LINKER"
    exec 9>&-
done
echo "$REV"
