#!/usr/bin/env bash
# What an adaptor costs per guest language (size, compile, load, instantiate, memory,
# CPU per poll against native code); writes docs/benchmarks/languages.md.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build-languages.sh"
cd "$ROOT"
mkdir -p docs/benchmarks
LANGUAGES_OUT="$(realpath -m "${LANGUAGES_OUT:-$ROOT/docs/benchmarks/languages.md}")" cargo bench --locked -p limb --bench languages
