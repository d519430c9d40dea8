#!/usr/bin/env bash
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/env.sh"
source "$ROOT/scripts/toolchains.sh"
# Builds Python adaptors with componentize-py.
#
#   build.sh OUT_DIR                 -> OUT_DIR/adaptor_counter_python.wasm
#                                       OUT_DIR/adaptor_registers_python.wasm
#   build.sh OUT_DIR DIR[=NAME] ...  -> OUT_DIR/adaptor_NAME_python.wasm from DIR/app.py
#                                       (NAME defaults to DIR's basename)
#
# The bindings (`wit_world`, `componentize_py_types`) are generated from $WIT_DIR by
# componentize-py in every build; nothing generated lives in the repository.
# `--stub-wasi` makes the component import only octopus:adaptor, no wasi:* at all.
# The helper octopus.py lives in template/ only: a folder without its own copy
# (registers/) gets the template's in its build copy.

OUT_DIR="${1:?usage: build.sh OUT_DIR [DIR[=NAME] ...]}"
shift
[ $# -gt 0 ] || set -- template=counter registers=registers
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRATCH="$CACHE/languages-build/python"
need_componentize_py
PYTHON="$TOOLCHAINS/venv/bin/python" # the venv componentize-py lives in (CPython >= 3.11)
mkdir -p "$OUT_DIR" "$SCRATCH"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
# componentize-py adds $VIRTUAL_ENV's site-packages to the app's path; keep a caller's
# venv out of the component.
unset VIRTUAL_ENV

fingerprint() { # files... -> one hash over their contents and the toolchain version
    cat "$@" <(echo "componentize-py $COMPONENTIZE_PY_VERSION") | sha256sum | cut -d' ' -f1
}

# Bindings for the native unit tests, regenerated when the WIT changes.
BINDINGS="$SCRATCH/bindings"
bindings_key="$(fingerprint "$WIT_DIR"/*.wit)"
if [ "$(cat "$BINDINGS.key" 2>/dev/null)" != "$bindings_key" ]; then
    rm -rf "$BINDINGS"
    "$COMPONENTIZE_PY" -q -d "$WIT_DIR" -w described-adaptor bindings "$BINDINGS"
    echo "$bindings_key" >"$BINDINGS.key"
fi

# The native tests of template/ and registers/, under CPython with fake capabilities:
# a Python exception shows here as a traceback, inside wasm only as `internal`.
tests_key="$(fingerprint "$HERE"/template/*.py "$HERE"/template/models.json "$HERE"/registers/*.py "$HERE"/tests/*.py "$WIT_DIR"/*.wit)"
if [ "$(cat "$SCRATCH/tests.key" 2>/dev/null)" != "$tests_key" ]; then
    if ! log="$(PYTHONDONTWRITEBYTECODE=1 "$PYTHON" "$HERE/tests/test_adaptors.py" "$BINDINGS" 2>&1)"; then
        echo "$log" >&2
        echo "native tests failed (tests/test_adaptors.py)" >&2
        exit 1
    fi
    echo "$tests_key" >"$SCRATCH/tests.key"
fi

build() { # source-dir adaptor-name
    local src="$1" name="$2"
    # A folder relative to the current directory, else to this one (template, registers).
    if [ -d "$src" ]; then src="$(cd "$src" && pwd)"; else src="$HERE/$src"; fi
    [ -f "$src/app.py" ] || { echo "$src/app.py not found" >&2; exit 1; }
    local out="$OUT_DIR/adaptor_${name}_python.wasm" key
    local cached="$SCRATCH/$name.wasm"
    # The helper: the folder's own octopus.py, else the template's.
    local helper=()
    [ -f "$src/octopus.py" ] || helper=("$HERE/template/octopus.py")
    # A folder with models.json declares its models: world `described-adaptor`.
    local world=adaptor declared=()
    if [ -f "$src/models.json" ]; then world=described-adaptor declared=("$src/models.json"); fi
    key="$(fingerprint "$src"/*.py "${declared[@]}" "${helper[@]}" "$WIT_DIR"/*.wit)"
    # Warm path: the sources have not changed since the cached component was built.
    if [ -s "$cached" ] && [ "$(cat "$SCRATCH/$name.key" 2>/dev/null)" = "$key" ]; then
        cmp -s "$cached" "$out" || cp "$cached" "$out"
        echo "adaptor_${name}_python.wasm is up to date"
        return
    fi
    # componentize-py bundles the app's directory (-p .): build from a clean copy so no
    # __pycache__, tests or stray files end up in the component.
    local work="$SCRATCH/$name"
    rm -rf "$work" "$SCRATCH/$name.key" && mkdir -p "$work"
    cp "$src"/*.py "${helper[@]}" "$work/"
    if [ "$world" = described-adaptor ]; then
        "$PYTHON" -c 'import sys; print("DECLARATIONS = " + repr(open(sys.argv[1]).read()))' \
            "$src/models.json" >"$work/declared_models.py"
    fi
    (cd "$work" && "$COMPONENTIZE_PY" -q -d "$WIT_DIR" -w "$world" componentize --stub-wasi app -o out.wasm)
    mv "$work/out.wasm" "$cached"
    echo "$key" >"$SCRATCH/$name.key"
    cp "$cached" "$out"
    echo "built $out ($(du -h "$out" | cut -f1))"
}

for arg in "$@"; do
    case "$arg" in
    *=*) build "${arg%%=*}" "${arg#*=}" ;;
    *) build "$arg" "$(basename "$arg")" ;;
    esac
done
