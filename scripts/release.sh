#!/usr/bin/env bash
# Builds a release: the limb, brain and octopus binaries for every architecture (static,
# by scripts/build-cross.sh), and the limb and brain container images as multi-arch OCI
# image indexes, assembled with Debian's buildah and skopeo (no Docker daemon; no tar or
# manifest bytes written by our code). See docs/release.md for what each output is for.
#
# Usage: scripts/release.sh [--out DIR] [--arch ARCH]... [--skip-build] [--check]
#   --out DIR      where the release goes (default $CACHE/release/dist); a previous
#                  release's files there are replaced
#   --arch ARCH    amd64, arm64 or armv7; repeat or comma-separate (default: all three)
#   --skip-build   use the binaries already in $OCTOPUS_BIN_DIR instead of building them
#   --check        afterwards, check the outputs (the platforms of each index, the archives
#                  against the layout, SHA256SUMS) and run scripts/test-cross.sh, which
#                  compares the arm64 limb under qemu with the native one, and with armv7
#                  in the release the armv7 limb (Pulley) on the dummy and Modbus examples
#
# The images are labelled with the commit the binaries were built from (their BUILD file).
#
# Reproducible: the image and archive times come from the commit (SOURCE_DATE_EPOCH), every
# file is owned by 0:0 with a fixed mode, so two runs from one commit give the same digests
# (scripts/test-images.sh checks it).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/oci-tools.sh"

OUT="$CACHE/release/dist"
ARCHES=()
BUILD=1
CHECK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --arch) IFS=, read -ra more <<<"$2"; ARCHES+=("${more[@]}"); shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        --check) CHECK=1; shift ;;
        -h|--help) sed -n '2,/^source/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64 armv7)
for a in "${ARCHES[@]}"; do oci_platform "$a" >/dev/null; done

BIN_DIR="${OCTOPUS_BIN_DIR:-$CACHE/release/bin}"
started=$SECONDS
if [ "$BUILD" = 1 ]; then
    "$ROOT/scripts/build-cross.sh" "${ARCHES[@]}"
fi
for a in "${ARCHES[@]}"; do
    for b in limb brain octopus; do
        [ -x "$BIN_DIR/$a/$b" ] || { echo "missing $BIN_DIR/$a/$b (run scripts/build-cross.sh $a)" >&2; exit 1; }
    done
done

ensure_oci_tools
release_metadata "$(binaries_revision "${ARCHES[@]}")"
echo "release $VERSION ($REVISION, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH) for ${ARCHES[*]} into $OUT"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -rf "${OUT:?}"/{binaries,images,oci,deploy,overlays,SHA256SUMS,digests.env}
mkdir -p "$OUT/binaries" "$OUT/images"

# Binary tarballs: sorted names, commit time, 0:0, gzip without a name or time stamp.
for a in "${ARCHES[@]}"; do
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --mode=0755 --transform "s|^|octopus-$VERSION-linux-$a/|" -C "$BIN_DIR/$a" -cf - limb brain octopus |
        gzip -9n >"$OUT/binaries/octopus-$VERSION-linux-$a.tar.gz"
done

oci_storage_begin
trap oci_storage_end EXIT
for image in limb brain; do
    build_image_index "$image" "$OUT" "${ARCHES[@]}"
done
write_release_deploy "$OUT"
(cd "$OUT" && find binaries images -type f | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
echo "release done in $((SECONDS - started)) s:"
cat "$OUT/digests.env"
if [ "$CHECK" = 1 ]; then
    check_release "$OUT" "${ARCHES[@]}"
    cross=()
    [[ " ${ARCHES[*]} " == *" armv7 "* ]] && cross+=(--armv7)
    "$ROOT/scripts/test-cross.sh" "${cross[@]}"
fi
