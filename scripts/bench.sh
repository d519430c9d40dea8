#!/usr/bin/env bash
# Benchmarks of the limb (release build); writes BENCHMARKS.md at the repository root.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_peers
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
BENCHMARKS_OUT="$ROOT/BENCHMARKS.md" cargo bench --locked -p limb --bench limb
