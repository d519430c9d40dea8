#!/usr/bin/env bash
# GPIO on a real Linux kernel: boots the kernel from scripts/gpio-kernel.sh (gpio-sim,
# the GPIO character device) under qemu-system-x86_64 with a busybox initramfs, runs the
# suites below inside it, and fails unless every suite printed a passing result.
#
# Suites (each a program in the initramfs's /suites, run by scripts/gpio-guest/init):
#   cdev  the limb's real backend (capabilities::gpio::CdevBackend) on gpio-sim: the
#         `gpio_sim` test target of the limb crate, built static for musl; it also
#         prints the edge-latency figure (OCTOPUS-GPIO-FIGURE, repeated at the end)
#   limb  the shipped static limb in standalone mode with GPIODevice links through the
#         GPIO adaptor (the same target's `standalone::` tests): outputs, inputs, edges,
#         refusals, a hot swap sampled for glitches, and the edge-to-status figure
#
# Usage: scripts/test-gpio.sh [--build-only]
#   --build-only  builds the kernel and the guest's test binaries, and stops there
#                 (scripts/test.sh does this in the background, ahead of the run)
# Environment: OCTOPUS_GPIO_ACCEL=tcg|kvm (default tcg: see below),
#              OCTOPUS_GPIO_TIMEOUT seconds for the whole guest (default 900).
# Acceleration: on this project's machines /dev/kvm exists but KVM does not run the guest
# (checked 2026-12-07 with qemu 10.0.2: `-cpu host` aborts with "failed to set MSR
# 0x10a", the default CPU hangs after "Booting from ROM"), so the default is software
# emulation (TCG, `-cpu max`). Measured with TCG: the guest boots and runs the cdev
# suite in 2-3 s; warm, the whole script takes 4.4-4.6 s, plus the test crate's compile
# when it changed. Cold it builds the kernel (scripts/gpio-kernel.sh) and the limb's
# test build for musl (36 min here with the machine loaded; most of it wasmtime).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
started=$SECONDS
ACCEL="${OCTOPUS_GPIO_ACCEL:-tcg}"
TIMEOUT="${OCTOPUS_GPIO_TIMEOUT:-900}"
GUEST_TARGET="${OCTOPUS_GPIO_GUEST_TARGET:-$CACHE/gpio-guest/target}"

ensure_gpio_guest

echo "== guest kernel"
KERNEL="$("$ROOT/scripts/gpio-kernel.sh")"
echo "   $KERNEL"

echo "== guest test binaries (static, x86_64-unknown-linux-musl)"
ensure_cross amd64
cross_env amd64
cd "$ROOT"
built="$(CARGO_TARGET_DIR="$GUEST_TARGET" cargo test --locked --no-run -p limb --no-default-features \
    --test gpio_sim --target x86_64-unknown-linux-musl --message-format=json-render-diagnostics)"
GPIO_SIM_TEST="$(python3 -c '
import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpio_sim"]
print(exes[-1] if exes else "")' <<<"$built")"
if [ -z "$GPIO_SIM_TEST" ]; then
    echo "cargo built no gpio_sim test binary" >&2
    exit 1
fi
# The count the guest must report as passed: the binary lists its own tests (it is
# static, so it runs here too; listing touches no GPIO).
CDEV_TESTS="$("$GPIO_SIM_TEST" --list --format terse --skip standalone:: | grep -c ': test$')"
LIMB_TESTS="$("$GPIO_SIM_TEST" --list --format terse standalone:: | grep -c ': test$')"
if [ "${1:-}" = --build-only ]; then
    echo "== built: the kernel and $((CDEV_TESTS + LIMB_TESTS)) guest tests, in $((SECONDS - started)) s"
    exit 0
fi

# The limb suite runs what ships: the static release limb and the GPIO adaptor (and its
# v2 build, for the hot swap).
LIMB_BIN="${OCTOPUS_LIMB_BIN:-$CACHE/release/bin/amd64/limb}"
if [ ! -x "$LIMB_BIN" ]; then
    "$ROOT/scripts/build-cross.sh" --only limb amd64
fi
for wasm in adaptor_gpio adaptor_gpio_v2; do
    if [ ! -s "$OCTOPUS_ADAPTORS_DIR/$wasm.wasm" ]; then
        echo "$OCTOPUS_ADAPTORS_DIR/$wasm.wasm is missing: run scripts/build-adaptors.sh" >&2
        exit 1
    fi
done

echo "== initramfs"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/octopus-gpio-guest.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
root="$WORK/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,suites,adaptors}
cp /bin/busybox "$root/bin/busybox"
cp "$ROOT/scripts/gpio-guest/init" "$root/init"
# Without debug info: the unstripped test binary is ~300 MB, more than the guest's
# memory holds while it unpacks the initramfs ("Initramfs unpacking failed").
strip --strip-debug -o "$root/bin/gpio_sim" "$GPIO_SIM_TEST"
strip -o "$root/bin/limb" "$LIMB_BIN"
cp "$OCTOPUS_ADAPTORS_DIR/adaptor_gpio.wasm" "$OCTOPUS_ADAPTORS_DIR/adaptor_gpio_v2.wasm" "$root/adaptors/"
cat >"$root/suites/cdev" <<'SUITE'
#!/bin/sh
exec /bin/gpio_sim --test-threads=1 --nocapture --skip standalone::
SUITE
cat >"$root/suites/limb" <<'SUITE'
#!/bin/sh
export OCTOPUS_LIMB=/bin/limb OCTOPUS_GPIO_ADAPTORS=/adaptors
exec /bin/gpio_sim --test-threads=1 --nocapture standalone::
SUITE
chmod +x "$root/init" "$root/suites/"*
echo 600 >"$root/suite-timeout"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initrd.gz")
echo "   $(du -h "$WORK/initrd.gz" | cut -f1)"

echo "== boot ($ACCEL, at most $TIMEOUT s)"
case "$ACCEL" in
tcg) accel=(-accel tcg -cpu max) ;;
kvm) accel=(-accel kvm -cpu host) ;;
*)
    echo "OCTOPUS_GPIO_ACCEL must be tcg or kvm" >&2
    exit 2
    ;;
esac
# The guest's clock. Under TCG the guest reads the host's TSC, but the kernel's PIT
# calibration of it fails on about half the boots ("Fast TSC calibration failed ...
# Marking TSC unstable"), and the guest then keeps time in jiffies (4 ms steps: the
# edge timings came out as 0 or 4000 us). Telling it the frequency (the host's
# `cpu MHz`; its CPU flags here say constant_tsc) made all 10 boots tried use the
# TSC. The guest prints the clocksource it ran on.
tsc=()
khz="$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)"
[ -n "$khz" ] && [ "$khz" -gt 0 ] && tsc=("tsc_early_khz=$khz")
console="$WORK/console.log"
boot=$SECONDS
set +e
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${accel[@]}" -m 1024 -nographic -no-reboot \
    -kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 loglevel=3 panic=-1 oops=panic clocksource=tsc tsc=reliable ${tsc[*]}" </dev/null >"$console" 2>&1
qemu_exit=$?
set -e
tr -d '\r' <"$console" >"$console.txt"
echo "   qemu exited with $qemu_exit after $((SECONDS - boot)) s"

# The verdict: every suite present, exit 0, the libtest counts complete, and the guest
# reached its end. Anything else fails, with the console shown.
fail=()
result() { sed -n "s/^OCTOPUS-GPIO-RESULT suite=$1 exit=\([0-9]*\).*/\1/p" "$console.txt"; }
case "$qemu_exit" in
0) ;;
124 | 137) fail+=("the guest did not finish within $TIMEOUT s (qemu stopped, exit $qemu_exit)") ;;
*) fail+=("qemu exited with $qemu_exit") ;;
esac
grep -q '^OCTOPUS-GPIO-DONE' "$console.txt" || fail+=("the guest never reached the end of its /init")
[ "$(result cdev)" = 0 ] || fail+=("suite cdev: exit '$(result cdev)'")
[ "$(result limb)" = 0 ] || fail+=("suite limb: exit '$(result limb)'")
grep -q "^test result: ok. $CDEV_TESTS passed; 0 failed; 0 ignored; 0 measured; $LIMB_TESTS filtered out" "$console.txt" ||
    fail+=("suite cdev: libtest did not report $CDEV_TESTS passed")
grep -q "^test result: ok. $LIMB_TESTS passed; 0 failed; 0 ignored; 0 measured; $CDEV_TESTS filtered out" "$console.txt" ||
    fail+=("suite limb: libtest did not report $LIMB_TESTS passed")
if [ ${#fail[@]} -gt 0 ]; then
    cat "$console.txt"
    printf 'FAIL: %s\n' "${fail[@]}" >&2
    exit 1
fi
grep -o 'OCTOPUS-GPIO-BEGIN.*' "$console.txt"
grep -E '^(test |OCTOPUS-GPIO-(RESULT|DONE))' "$console.txt"
# The figures (edge latency inside the guest, under TCG), for BENCHMARKS.md.
grep -o 'OCTOPUS-GPIO-FIGURE.*' "$console.txt" || true
echo "== GPIO guest passed in $((SECONDS - started)) s"
