#!/usr/bin/env bash
# BLE on one controller: PERIPHERALS (16,8,4,1) Bumble peripherals notifying every PERIOD_MS
# (200) on one virtual link, served to the limb's one controller; per fleet size the time
# from a notification to the status, notifications shown against sent, the limb's CPU and
# memory per device, then READS (200) back-to-back reads per peripheral through the `ble`
# capability (latency and the controller's read rate). Writes docs/benchmarks/ble.md.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_peers
"$ROOT/scripts/build-adaptors.sh" >/dev/null
cd "$ROOT"
mkdir -p docs/benchmarks
BLE_OUT="$(realpath -m "${BLE_OUT:-$ROOT/docs/benchmarks/ble.md}")" cargo bench --locked -p limb --bench ble
