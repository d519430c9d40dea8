#!/usr/bin/env bash
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/env.sh"
source "$ROOT/scripts/toolchains.sh"
# Builds both adaptors and runs test/host.mjs on them: the components themselves (not the
# JS sources) inside Node, with the limb's imports faked. No Modbus server needed.
HERE="$ROOT/adaptors-wasm/languages/javascript"
WORK="$CACHE/languages-build/javascript/test"
mkdir -p "$WORK"
"$HERE/build.sh" "$WORK/out" >/dev/null
need_jco
for name in counter registers; do
    rm -rf "$WORK/$name"
    "$NPM_TOOLS/jco" transpile "$WORK/out/adaptor_${name}_javascript.wasm" -o "$WORK/$name" \
        --instantiation async --no-wasi-shim --quiet
done
# Node < 21 (V8 < 11.4) needs a flag for the extended-const proposal the components use.
flags=()
[ "$(node -p 'process.versions.node.split(".")[0]')" -lt 21 ] && flags+=(--experimental-wasm-extended-const)
node "${flags[@]}" "$HERE/test/host.mjs" "$WORK/counter" "$WORK/registers"
