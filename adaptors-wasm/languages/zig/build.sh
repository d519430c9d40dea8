#!/usr/bin/env bash
# Builds the Zig adaptors: `build.sh OUT_DIR` -> OUT_DIR/adaptor_counter_zig.wasm (from
# template/) and OUT_DIR/adaptor_registers_zig.wasm (from registers/).
# `build.sh OUT_DIR NAME=DIR...` builds your own adaptors instead: DIR holds adaptor.zig
# and octopus.zig, the result is OUT_DIR/adaptor_NAME_zig.wasm.
# A folder with a models.json declares its models' schemas: it is built for the world
# `described-adaptor` (adaptor.zig embeds the file as `declared_models`), else `adaptor`.
# The helper octopus.zig lives in template/ only: a folder without its own copy
# (registers/) is built from a scratch copy of its .zig files plus the template's.
#
#   1. `wit-bindgen c` turns ../../../wit into adaptor.h/adaptor.c + the world's type
#      object; `zig cc` compiles adaptor.c (against wasi-libc's headers only) and
#      `zig translate-c` turns adaptor.h into a Zig module named `bindings`.
#   2. `zig build-exe -target wasm32-freestanding` links the adaptor's Zig sources with
#      those two objects. No libc: octopus.zig supplies malloc/free/realloc, so the core
#      module imports only the Octopus interfaces (no WASI, no adapter).
#   3. `wasm-tools component new` wraps the core module into a component.
#
# Scratch lives in $CACHE/languages-build/zig; each step reruns only when its inputs
# (the WIT, the tool versions, the adaptor's .zig files) change.
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/env.sh"
source "$ROOT/scripts/toolchains.sh"

[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [NAME=DIR...]" >&2; exit 2; }
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("counter=$HERE/template" "registers=$HERE/registers")
BUILD="$CACHE/languages-build/zig"
GEN="$BUILD/gen"
mkdir -p "$BUILD"

need_zig
need_wasm_tools
need_wit_bindgen

# Optimisation mode: ReleaseSafe keeps bounds and overflow checks (a bug traps and is
# logged instead of corrupting the device's state); ReleaseSmall is ~30 % smaller.
OPTIMIZE="${ZIG_OPTIMIZE:-ReleaseSafe}"

# --- 1. bindings per world, regenerated when the WIT or a tool changes --------------------
# `adaptor` in gen/, `described-adaptor` in gen-described/; both are named `adaptor` in C
# (--rename-world), so octopus.zig is the same for both.
bindings() { # WORLD -> sets GEN and stamp
    local world="$1"
    GEN="$BUILD/gen"
    [ "$world" = adaptor ] || GEN="$BUILD/gen-described"
    stamp="$( { cat "$WIT_DIR"/*.wit; echo "$ZIG_VERSION $WIT_BINDGEN_VERSION $WASM_TOOLS_VERSION"; } | sha256sum | cut -c1-16)"
    [ "$(cat "$GEN/.stamp" 2>/dev/null)" != "$stamp" ] || return 0
    echo "zig: generating $world bindings from $WIT_DIR" >&2
    rm -rf "$GEN.tmp"
    mkdir -p "$GEN.tmp"
    log="$("$WIT_BINDGEN" c "$WIT_DIR" --world "$world" --rename-world adaptor --out-dir "$GEN.tmp" 2>&1)" || { echo "$log" >&2; exit 1; }
    # wasm32-wasi only for the headers (stdlib.h, string.h); nothing from libc is linked.
    $ZIG cc --target=wasm32-wasi -O2 -c "$GEN.tmp/adaptor.c" -o "$GEN.tmp/adaptor.o"
    # The first translate-c builds Zig's C translator into the global cache (~1 min, once).
    $ZIG translate-c -target wasm32-freestanding "$GEN.tmp/adaptor.h" >"$GEN.tmp/bindings.zig"
    echo "$stamp" >"$GEN.tmp/.stamp"
    rm -rf "$GEN" && mv "$GEN.tmp" "$GEN"
}

# --- 2 + 3. one component per adaptor, rebuilt when its sources change --------------------
# (`zig build-exe` on the command line recompiles every time, ~2 s, so keep our own stamp.)
build_one() { # NAME SOURCE_DIR
    local name="$1" src
    src="$(cd "$2" && pwd)"
    [ -f "$src/adaptor.zig" ] || { echo "zig: $src needs adaptor.zig" >&2; exit 1; }
    # The helper: the folder's own octopus.zig, else the template's.
    local helper=()
    [ -f "$src/octopus.zig" ] || helper=("$HERE/template/octopus.zig")
    local world=adaptor declared=()
    if [ -f "$src/models.json" ]; then
        world=described-adaptor declared=("$src/models.json")
        # Caught here rather than as a panic in describe-models.
        python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$src/models.json" ||
            { echo "zig: $src/models.json is not valid JSON" >&2; exit 1; }
    fi
    bindings "$world"
    local core="$BUILD/$name.core.wasm" comp="$BUILD/$name.wasm" out="$OUT/adaptor_${name}_zig.wasm"
    local sum
    sum="$( { find "$src" -name '*.zig' | sort | xargs cat; [ ${#helper[@]} -eq 0 ] || cat "${helper[@]}"; [ ${#declared[@]} -eq 0 ] || cat "${declared[@]}"; echo "$stamp $OPTIMIZE"; } | sha256sum | cut -c1-16)"
    if [ ! -s "$comp" ] || [ "$(cat "$comp.stamp" 2>/dev/null)" != "$sum" ]; then
        if [ ${#helper[@]} -gt 0 ]; then
            # Zig imports files only from below the root module's folder: build a copy.
            rm -rf "$BUILD/$name.src" && mkdir -p "$BUILD/$name.src"
            cp -R "$src/." "${helper[@]}" "$BUILD/$name.src/"
            src="$BUILD/$name.src"
        fi
        $ZIG build-exe \
            -target wasm32-freestanding -fno-entry -O "$OPTIMIZE" -fstrip \
            --cache-dir "$BUILD/zig-cache" \
            --dep bindings -Mroot="$src/adaptor.zig" -Mbindings="$GEN/bindings.zig" \
            "$GEN/adaptor.o" "$GEN/adaptor_component_type.o" \
            -femit-bin="$core"
        "$WASM_TOOLS" component new "$core" -o "$comp.tmp"
        "$WASM_TOOLS" validate --features all "$comp.tmp"
        mv "$comp.tmp" "$comp"
        echo "$sum" >"$comp.stamp"
    fi
    cp "$comp" "$out.tmp" && mv "$out.tmp" "$out"
    echo "zig: $out ($(stat -c %s "$out") bytes)" >&2
}

for target in "${targets[@]}"; do
    build_one "${target%%=*}" "${target#*=}"
done
