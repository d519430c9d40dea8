#!/usr/bin/env bash
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/env.sh"
source "$ROOT/scripts/toolchains.sh"
# Builds JavaScript adaptors with componentize-qjs (QuickJS):
#   build.sh OUT_DIR                 ->  OUT_DIR/adaptor_counter_javascript.wasm
#                                        OUT_DIR/adaptor_registers_javascript.wasm
#   build.sh OUT_DIR SRC_DIR NAME    ->  OUT_DIR/adaptor_NAME_javascript.wasm (your own copy)
# SRC_DIR holds app.js (the entry) and the modules it imports. A folder with app.ts instead
# is compiled with tsc first (its .js files, such as octopus.js, are carried along).
# The helper octopus.js lives in template/ only: a folder without its own copy
# (registers/) is built from a scratch copy of it plus the template's octopus.js.

[ $# -eq 1 ] || [ $# -eq 3 ] || { echo "usage: $0 OUT_DIR [SRC_DIR NAME]" >&2; exit 2; }
OUT_DIR="$1"
HERE="$ROOT/adaptors-wasm/languages/javascript"
SCRATCH="$CACHE/languages-build/javascript"
mkdir -p "$OUT_DIR" "$SCRATCH"

command -v node >/dev/null || { echo "node is required (componentize-qjs is an npm package)" >&2; exit 1; }
need_jco
need_wasm_tools
QJS="$NPM_TOOLS/componentize-qjs"

# Flags: --sync (no component-model async ABI), --stub-wasi (import only our WIT). The
# world is `described-adaptor` when the folder has a models.json (the models' schemas,
# made into models.js here), else `adaptor`.
FLAGS=(--sync --stub-wasi)

build() { # SRC_DIR NAME [SED_SCRIPT applied to app.js and models.json: a test variant]
    local src="$1" name="$2" edit="${3:-}"
    local work="$SCRATCH/$name-$(echo "$src" | sha256sum | cut -c1-8)"
    local out="$OUT_DIR/adaptor_${name}_javascript.wasm"
    mkdir -p "$work"
    local world=adaptor
    [ -f "$src/models.json" ] && world=described-adaptor
    # The helper: the folder's own octopus.js, else the template's.
    local helper=()
    [ -f "$src/octopus.js" ] || helper=("$HERE/template/octopus.js")
    # Rebuild only when the sources, the helper, the WIT, the toolchain or the flags changed.
    local key
    key="$( (find "$src" -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.ts' -o -name '*.json' \) -not -path '*/node_modules/*' | LC_ALL=C sort | xargs cat; cat "${helper[@]}" "$WIT_DIR"/*.wit) | sha256sum | cut -c1-16)"
    key="$key-$JCO_VERSION-$(echo "$world ${FLAGS[*]} $edit" | sha256sum | cut -c1-8)"
    local cached="$work/$key.wasm"
    if [ ! -s "$cached" ]; then
        if [ ${#helper[@]} -gt 0 ] || [ "$world" = described-adaptor ] || [ -n "$edit" ]; then
            # Build from a copy: with the helper, the variant's edit and models.js.
            rm -rf "$work/src" && mkdir -p "$work/src"
            cp -R "$src/." "${helper[@]}" "$work/src/"
            src="$work/src"
            [ -z "$edit" ] || sed -i -e "$edit" "$src/app.js" $(find "$src" -maxdepth 1 -name models.json)
            if [ -f "$src/models.json" ]; then
                { printf 'export default '; cat "$src/models.json"; printf ';\n'; } > "$src/models.js"
            fi
        fi
        local entry="$src/app.js" root="$src"
        if [ -f "$src/app.ts" ]; then
            # tsc follows app.ts's imports (.js ones too, with --allowJs); ambient
            # declarations (*.d.ts, e.g. for the octopus:adaptor/* modules) are passed as well.
            rm -rf "$work/js" && mkdir -p "$work/js"
            "$NPM_TOOLS/tsc" --target es2022 --module es2022 --moduleResolution bundler \
                --strict --skipLibCheck --allowJs --rootDir "$src" --outDir "$work/js" \
                "$src/app.ts" $(find "$src" -maxdepth 1 -name '*.d.ts')
            entry="$work/js/app.js" root="$work/js"
        fi
        rm -f "$work"/*.wasm
        (cd "$work" && "$QJS" -w "$WIT_DIR" -j "$entry" --module-root "$root" -n "$world" "${FLAGS[@]}" -o "$cached.tmp") >"$work/build.log" 2>&1 \
            || { cat "$work/build.log" >&2; rm -f "$cached.tmp"; echo "componentize-qjs failed for $name" >&2; exit 1; }
        # --stub-wasi must leave nothing but our own contract among the imports.
        if "$WASM_TOOLS" component wit "$cached.tmp" | grep -q 'import wasi:'; then
            echo "$name: the component imports WASI; expected only octopus:adaptor" >&2
            exit 1
        fi
        mv "$cached.tmp" "$cached"
    fi
    cp "$cached" "$out.tmp" && mv "$out.tmp" "$out"
    echo "$out"
}

if [ $# -eq 3 ]; then
    build "$(cd "$2" && pwd)" "$3"
    exit 0
fi

build "$HERE/template" counter
build "$HERE/registers" registers
# A test fixture: the counter's next version, with `step` renamed to `increment` (the
# schema-checked hot swap holds links that still say `step`).
build "$HERE/template" counter_renamed 's/"step"/"increment"/g; s/0\.1\.0+/0.2.0+/'

