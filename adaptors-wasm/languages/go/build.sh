#!/usr/bin/env bash
# Builds the Go adaptors into WebAssembly components.
#
#   build.sh OUT_DIR                     -> OUT_DIR/adaptor_counter_go.wasm
#                                           OUT_DIR/adaptor_registers_go.wasm
#   build.sh --adaptor SRC_DIR OUT.wasm  -> one adaptor from your own copy of template/
#
# The helper, export_octopus_adaptor_driver/octopus.go, lives in template/ only: an adaptor
# folder without its own copy (registers/) gets the template's in the build folder.
# A folder with a models.json declares its models' schemas: it is built for the world
# `described-adaptor`, and models.json goes next to export_octopus_adaptor_models/models.go
# (the folder's own, else the template's), which embeds it and exports `models`.
# Bindings are generated from the repo's wit/ on every build, in a scratch folder under
# the cache (never in the source folder); Go's build cache keeps warm builds fast.
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/env.sh"
source "$ROOT/scripts/toolchains.sh"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$CACHE/languages-build/go"

usage() {
    echo "usage: $0 OUT_DIR | $0 --adaptor SRC_DIR OUT.wasm" >&2
    exit 2
}

# Arguments first, so a usage error does not wait for a toolchain install.
if [ "${1:-}" = "--adaptor" ]; then
    [ $# -eq 3 ] && [ -d "$2" ] || usage
    targets=("$(cd "$2" && pwd)")
    case "$3" in /*) outs=("$3") ;; *) outs=("$PWD/$3") ;; esac
else
    [ $# -eq 1 ] && [ "${1:0:1}" != "-" ] || usage
    mkdir -p "$1"
    out_dir="$(cd "$1" && pwd)"
    targets=("$HERE/template" "$HERE/registers")
    outs=("$out_dir/adaptor_counter_go.wasm" "$out_dir/adaptor_registers_go.wasm")
fi

need_go
need_wit_bindgen
need_wasm_tools
need_wasi_adapter

if [ ! -f "$WIT_BINDGEN_GO_PKG/go.mod" ]; then
    echo "error: the Go bindings runtime (go.bytecodealliance.org/pkg) is missing at $WIT_BINDGEN_GO_PKG;" >&2
    echo "       it is copied from the wit-bindgen-go crate source (~/.cargo/registry/src/*/wit-bindgen-go-*/src/pkg)" >&2
    exit 1
fi

# build_one SRC_DIR OUT.wasm: SRC_DIR holds go.mod and export_octopus_adaptor_driver/.
build_one() {
    local src="$1" out="$2"
    local name
    name="$(basename "$out" .wasm)"
    local work="$BUILD/$name"
    [ -f "$src/go.mod" ] && [ -d "$src/export_octopus_adaptor_driver" ] || {
        echo "error: $src has no go.mod or export_octopus_adaptor_driver/ (copy $HERE/template)" >&2
        return 1
    }
    local world=adaptor
    if [ -f "$src/models.json" ]; then
        world=described-adaptor
        # Caught here rather than as a trap in describe-models.
        python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$src/models.json" || {
            echo "error: $src/models.json is not valid JSON" >&2
            return 1
        }
    fi
    rm -rf "$work"
    mkdir -p "$work/third_party"
    # 1. Bindings: the import packages and wit_exports.go (package main). This also
    #    writes a go.mod, which the template's go.mod replaces in step 2.
    "$WIT_BINDGEN" go "$WIT_DIR" --world "$world" --out-dir "$work" --quiet >/dev/null 2>"$work/wit-bindgen.log" || {
        cat "$work/wit-bindgen.log" >&2
        return 1
    }
    # 2. The adaptor's own sources over the generated tree, the helper (the folder's own,
    #    else the template's) and the runtime module.
    cp -R "$src/." "$work/"
    local helper=export_octopus_adaptor_driver/octopus.go
    [ -f "$src/$helper" ] || cp "$HERE/template/$helper" "$work/$helper"
    if [ "$world" = described-adaptor ]; then
        # go:embed reads only below the package's folder (Go's build cache hashes it).
        local models=export_octopus_adaptor_models
        [ -f "$src/$models/models.go" ] || { mkdir -p "$work/$models" && cp "$HERE/template/$models/models.go" "$work/$models/"; }
        cp "$src/models.json" "$work/$models/models.json"
    fi
    cp -R "$WIT_BINDGEN_GO_PKG" "$work/third_party/pkg"
    # 3. Core module: a wasip1 reactor exporting the driver functions.
    (cd "$work" && GOOS=wasip1 GOARCH=wasm GOFLAGS=-mod=mod \
        "$GO" build -trimpath -buildmode=c-shared -ldflags="-s -w -checklinkname=0" -o core.wasm .)
    # 4. Component: embed the world's type information, then wrap the WASI p1 imports
    #    of Go's runtime with the reactor adapter.
    "$WASM_TOOLS" component embed "$WIT_DIR" --world "$world" "$work/core.wasm" -o "$work/embed.wasm"
    "$WASM_TOOLS" component new "$work/embed.wasm" \
        --adapt wasi_snapshot_preview1="$WASI_ADAPTER" -o "$work/out.wasm"
    mkdir -p "$(dirname "$out")"
    cp "$work/out.wasm" "$out"
    echo "built $out ($(($(stat -c %s "$out") / 1024)) KiB)"
}

for i in "${!targets[@]}"; do
    build_one "${targets[$i]}" "${outs[$i]}"
done
