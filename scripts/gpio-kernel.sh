#!/usr/bin/env bash
# Builds the small Linux kernel the GPIO guest tests boot (scripts/test-gpio.sh): Debian's
# linux-source-6.1, `make tinyconfig` plus scripts/gpio-guest/kernel.config (gpio-sim, the
# GPIO character device, configfs and the system calls the limb uses). Prints the path of
# the bzImage.
#
# Cached in $CACHE/gpio-kernel/<key>/bzImage, where the key hashes the config fragment's
# CONFIG_ lines, the source package's version and RECIPE: a warm run asks apt-cache for
# the version and returns (under 1 s). Cold, on this project's 2-core machine: 24 min
# wall while other builds kept it loaded (7 min of CPU, at nice 19); 8 min on idle cores
# (test-peers part B).
# The source tree is deleted after the build; only the .deb (139 MB) stays, so that a
# config change rebuilds without downloading again.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PKG=linux-source-6.1
# Bump when the build steps below change what they produce (comments do not count).
RECIPE=1
FRAGMENT="$ROOT/scripts/gpio-guest/kernel.config"
KDIR="$CACHE/gpio-kernel"

# The kernel build's tools (and the guest's), from Debian's packages when missing.
ensure_gpio_guest

version="$(apt-cache policy "$PKG" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "apt knows no $PKG yet: updating its lists" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >&2
    version="$(apt-cache policy "$PKG" | sed -n 's/^ *Candidate: //p')"
fi
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "apt has no candidate for $PKG" >&2
    exit 1
fi

key="$( (echo "$PKG=$version recipe=$RECIPE" && grep '^CONFIG_' "$FRAGMENT") | sha256sum | cut -c1-16)"
out="$KDIR/$key"
if [ -s "$out/bzImage" ]; then
    echo "$out/bzImage"
    exit 0
fi

mkdir -p "$KDIR/debs"
exec 9>"$KDIR/lock"
flock 9
if [ -s "$out/bzImage" ]; then # another run built it while this one waited
    echo "$out/bzImage"
    exit 0
fi
started=$SECONDS
deb="$(ls "$KDIR/debs/${PKG}_${version//:/%3a}_all.deb" 2>/dev/null || true)"
if [ -z "$deb" ]; then
    echo "downloading $PKG $version" >&2
    (cd "$KDIR/debs" && apt-get download -q "$PKG=$version" >&2)
    deb="$(ls "$KDIR/debs/${PKG}_"*"_all.deb" | grep -F "${version//:/%3a}" | head -n1)"
fi
work="$KDIR/build.$key"
rm -rf "$work"
mkdir -p "$work"
echo "unpacking $deb" >&2
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards './usr/src/linux-source-6.1.tar.xz'
tar -xJf "$work/usr/src/linux-source-6.1.tar.xz" -C "$work"
rm -rf "$work/usr"
src="$work/linux-source-6.1"

echo "configuring (tinyconfig + $(grep -c '^CONFIG_' "$FRAGMENT") options)" >&2
make -C "$src" -s ARCH=x86_64 tinyconfig >&2
opts=()
while read -r line; do
    case "$line" in
    CONFIG_*=y) opts+=(-e "${line%%=*}") ;;
    '' | '#'*) ;;
    *)
        echo "$FRAGMENT: only CONFIG_X=y lines are supported: $line" >&2
        exit 1
        ;;
    esac
done <"$FRAGMENT"
"$src/scripts/config" --file "$src/.config" "${opts[@]}"
make -C "$src" -s ARCH=x86_64 olddefconfig >&2
# olddefconfig drops options whose dependencies are unmet: fail rather than build a
# kernel without gpio-sim.
dropped=()
while read -r line; do
    case "$line" in CONFIG_*=y) grep -qx "$line" "$src/.config" || dropped+=("$line") ;; esac
done <"$FRAGMENT"
if [ ${#dropped[@]} -gt 0 ]; then
    echo "olddefconfig dropped: ${dropped[*]}" >&2
    exit 1
fi

echo "building bzImage with $(nproc) jobs" >&2
make -C "$src" -s ARCH=x86_64 -j"$(nproc)" bzImage >&2
mkdir -p "$out.new"
cp "$src/arch/x86/boot/bzImage" "$out.new/bzImage"
cp "$src/.config" "$out.new/config"
echo "$PKG=$version built in $((SECONDS - started)) s" >"$out.new/BUILD"
rm -rf "$out"
mv "$out.new" "$out"
rm -rf "$work"
echo "   built in $((SECONDS - started)) s" >&2
echo "$out/bzImage"
