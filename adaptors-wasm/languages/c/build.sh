#!/usr/bin/env bash
# Builds the C adaptors.
#
#   build.sh OUT_DIR            -> OUT_DIR/adaptor_counter_c.wasm, OUT_DIR/adaptor_registers_c.wasm
#   build.sh OUT_DIR DIR...     -> OUT_DIR/adaptor_<basename of DIR>_c.wasm for each DIR
#                                  (your own copy of template/)
#
# Per adaptor folder: wit-bindgen's C bindings (generated here from the repo's wit/,
# never committed), every *.c of the folder compiled by clang-16 for wasm32-wasi as a
# reactor, then wrapped into a component with the WASI preview1 reactor adapter.
#
# The helper, octopus.h + octopus.c, lives in template/ only: each file comes from the
# adaptor folder when it has its own copy, else from template/ (registers/ has none).
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/env.sh"
source "$ROOT/scripts/toolchains.sh"

OUT_DIR="${1:?usage: build.sh OUT_DIR [ADAPTOR_DIR...]}"
shift
HERE="$ROOT/adaptors-wasm/languages/c"
WORK="$CACHE/languages-build/c"

need_clang_wasi
need_wit_bindgen
need_wasm_tools
need_wasi_adapter

mkdir -p "$OUT_DIR" "$WORK"
exec 8>"$WORK/.lock"
flock 8 # one build at a time in $WORK

# Bindings, regenerated when the WIT or wit-bindgen changes.
GEN="$WORK/gen"
gen_key="$({ cat "$WIT_DIR"/*.wit; "$WIT_BINDGEN" --version; } | sha256sum | cut -c1-16)"
if [ "$(cat "$GEN/.key" 2>/dev/null)" != "$gen_key" ]; then
    rm -rf "$GEN.tmp"
    if ! log="$("$WIT_BINDGEN" c "$WIT_DIR" --world adaptor --out-dir "$GEN.tmp" 2>&1)"; then
        echo "$log" >&2
        exit 1
    fi
    # The generated C is not ours to lint: compile it once, without warnings.
    "$CLANG" --target=wasm32-wasi -mexec-model=reactor -O2 -w -c "$GEN.tmp/adaptor.c" -o "$GEN.tmp/bindings.o"
    echo "$gen_key" >"$GEN.tmp/.key"
    rm -rf "$GEN" && mv "$GEN.tmp" "$GEN"
fi

CFLAGS=(--target=wasm32-wasi -mexec-model=reactor -O2 -std=c11
    -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion)
# --stack-first puts the 64 KiB stack below the data, so an overflow traps instead of
# silently overwriting static variables.
LDFLAGS=(-Wl,--stack-first -Wl,-z,stack-size=65536 -Wl,--strip-all)

# build NAME DIR: skipped when neither the sources nor the tools changed.
build() {
    local name="$1" src="$2"
    local out="$OUT_DIR/adaptor_${name}_c.wasm" scratch="$WORK/$name"
    [ -n "$(compgen -G "$src/*.c")" ] || { echo "no .c files in $src" >&2; exit 1; }
    # The helper: the folder's own octopus.h/octopus.c, else the template's (its
    # octopus.c compiled along, its folder searched last for octopus.h).
    local srcs=() incs=(-I "$GEN" -I "$src") helper=()
    if [ ! -f "$src/octopus.c" ]; then
        srcs+=("$HERE/template/octopus.c") helper+=("$HERE/template/octopus.c")
    fi
    srcs+=("$src"/*.c)
    if [ ! -f "$src/octopus.h" ]; then
        incs+=(-I "$HERE/template") helper+=("$HERE/template/octopus.h")
    fi
    local key
    key="$({ cat "$src"/*.c "$src"/*.h "${helper[@]}" 2>/dev/null; echo "$gen_key ${CFLAGS[*]} ${LDFLAGS[*]}"
        "$CLANG" --version; cat "$WASI_ADAPTER"; "$WASM_TOOLS" --version; } | sha256sum | cut -c1-16)"
    if [ -s "$scratch.wasm" ] && [ "$(cat "$scratch.key" 2>/dev/null)" = "$key" ]; then
        cmp -s "$scratch.wasm" "$out" || cp "$scratch.wasm" "$out"
        return
    fi
    rm -f "$scratch.key"
    "$CLANG" "${CFLAGS[@]}" "${incs[@]}" "${LDFLAGS[@]}" -o "$scratch.core.wasm" \
        "${srcs[@]}" "$GEN/bindings.o" "$GEN/adaptor_component_type.o"
    "$WASM_TOOLS" component new "$scratch.core.wasm" \
        --adapt wasi_snapshot_preview1="$WASI_ADAPTER" -o "$scratch.wasm"
    echo "$key" >"$scratch.key"
    cp "$scratch.wasm" "$out"
    echo "built $out ($(stat -c %s "$out") bytes)"
}

if [ $# -eq 0 ]; then
    build counter "$HERE/template"
    build registers "$HERE/registers"
else
    for dir in "$@"; do
        dir="$(cd "$dir" && pwd)"
        build "$(basename "$dir")" "$dir"
    done
fi
