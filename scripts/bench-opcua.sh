#!/usr/bin/env bash
# OPC UA at scale: DEVICES (100) devices with ITEMS (10) monitored items each against one
# asyncua server changing every value once a second, per publishing interval in
# INTERVALS (ms, default 1000,100); the limb's CPU and memory per device and the time
# from a change on the server to the status. Writes docs/benchmarks/opcua.md.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_peers
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
mkdir -p docs/benchmarks
OPCUA_OUT="$(realpath -m "${OPCUA_OUT:-$ROOT/docs/benchmarks/opcua.md}")" cargo bench --locked -p limb --bench opcua
