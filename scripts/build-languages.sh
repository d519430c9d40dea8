#!/usr/bin/env bash
# Builds the counter template and the registers adaptor of every guest language in
# adaptors-wasm/languages/ (installing each toolchain on first use, cached under
# $CACHE/toolchains) into $OCTOPUS_ADAPTORS_DIR, and prints build time and size per
# language. Usage: scripts/build-languages.sh [LANGUAGE...]
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_toolchain
languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(rust c go python javascript zig)
report="$CACHE/languages-build/report.tsv"
mkdir -p "$(dirname "$report")"
: >"$report"
for lang in "${languages[@]}"; do
    started=$(date +%s%N)
    if ! bash "$ROOT/adaptors-wasm/languages/$lang/build.sh" "$OCTOPUS_ADAPTORS_DIR"; then
        echo "build of the $lang adaptors failed" >&2
        exit 1
    fi
    took=$(( ($(date +%s%N) - started) / 1000000 ))
    for kind in counter registers; do
        wasm="$OCTOPUS_ADAPTORS_DIR/adaptor_${kind}_${lang}.wasm"
        [ -s "$wasm" ] || { echo "$lang build made no $wasm" >&2; exit 1; }
        printf '%s\t%s\t%s\t%s\n' "$lang" "$kind" "$(stat -c %s "$wasm")" "$took" >>"$report"
    done
done
printf '%-11s %-10s %12s %10s\n' language adaptor bytes "build (ms)"
while IFS=$'\t' read -r lang kind bytes took; do
    printf '%-11s %-10s %12s %10s\n' "$lang" "$kind" "$bytes" "$took"
done <"$report"
