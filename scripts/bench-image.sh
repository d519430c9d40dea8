#!/usr/bin/env bash
# Sizes of a release (images per platform, compressed and uncompressed; binaries), and
# limb start to first poll inside the container: N times, `podman start` of a created
# limb container (the standalone example, confined as in scripts/test-images.sh) until
# /devices, read from inside the container's network namespace every 10 ms, shows a
# device with a poll; with an empty compile cache (a fresh tmpfs: the adaptor is compiled)
# and with a warm one (a cache directory the first run filled). Prints the median and range.
#
# Usage: scripts/bench-image.sh [N] [RELEASE]
#   N        runs per case (default 10)
#   RELEASE  a scripts/release.sh output directory (default $CACHE/release/dist)
# Timings are this machine's, not a target node's; run on an idle machine.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/oci-tools.sh"
N="${1:-10}"
release_metadata
RELEASE="${2:-$CACHE/release/dist}"
ARCHIVE="$RELEASE/images/limb-$VERSION.oci.tar"
[ -f "$ARCHIVE" ] || { echo "no $ARCHIVE: run scripts/release.sh first" >&2; exit 1; }
source "$RELEASE/digests.env"

# Compressed: what a node pulls (manifest, config and gzip layer); uncompressed: the layer
# as unpacked on the node.
echo "| image | platform | compressed | uncompressed |"
echo "| --- | --- | --- | --- |"
blob() { echo "$RELEASE/oci/blobs/sha256/${1#sha256:}"; }
for name in limb brain; do
    index="$(skopeo inspect --raw "oci:$RELEASE/oci:$REGISTRY/$name:$VERSION")"
    for m in $(jq -r '.manifests[].digest' <<<"$index"); do
        platform="$(jq -r --arg m "$m" '.manifests[] | select(.digest == $m) | .platform | [.architecture, .variant // empty] | join("/")' <<<"$index")"
        packed="$(jq '.config.size + ([.layers[].size] | add)' "$(blob "$m")")"
        packed=$((packed + $(stat -c %s "$(blob "$m")")))
        unpacked=0
        for l in $(jq -r '.layers[].digest' "$(blob "$m")"); do
            unpacked=$((unpacked + $(gzip -dc "$(blob "$l")" | wc -c)))
        done
        echo "| $name | $platform | $(numfmt --to=iec-i --suffix=B --format=%.1f "$packed") ($packed) | $(numfmt --to=iec-i --suffix=B --format=%.1f "$unpacked") ($unpacked) |"
    done
done
echo
echo "| binary | $(for a in "$RELEASE"/binaries/*.tar.gz; do a="${a##*-linux-}"; printf '%s | ' "${a%.tar.gz}"; done)"
echo "| --- | $(for _ in "$RELEASE"/binaries/*.tar.gz; do printf -- '--- | '; done)"
for b in limb brain octopus; do
    printf '| %s | ' "$b"
    for a in "$RELEASE"/binaries/*.tar.gz; do
        size="$(tar -tvzf "$a" | awk -v b="$b" '$6 == b || $6 ~ "/" b "$" {print $3}')"
        printf '%s (%s) | ' "$(numfmt --to=iec-i --suffix=B --format=%.1f "$size")" "$size"
    done
    echo
done
echo
ensure_oci_tools
cd "$ROOT"
T="$(mktemp -d "${TMPDIR:-/tmp}/octopus-bench-image.XXXXXX")"
trap 'oci_storage_end; rm -rf "$T"' EXIT
oci_storage_begin
ref="$(podman load -q -i "$ARCHIVE" | sed -n 's/^Loaded image: //p' | head -1)"
mkdir -p "$T/links" "$T/warm"
cp examples/standalone/*.yaml "$T/links/"
cp "$OCTOPUS_ADAPTORS_DIR/adaptor_dummy.wasm" "$T/links/"
chmod -R a+rX "$T/links"
chmod 0777 "$T/warm"

# One run: prints milliseconds from `podman start` to the first device with a poll.
run_once() {
    local cache_mount=("$@") id start pid deadline
    id="$(podman create --read-only --read-only-tmpfs=false --cap-drop=all \
        --security-opt no-new-privileges --network none "${cache_mount[@]}" \
        -v "$T/links:/links:ro" "$ref" --cache-dir /cache standalone /links \
        --listen 127.0.0.1:8080 --output none)"
    start="$(date +%s%N)"
    podman start "$id" >/dev/null
    pid="$(podman inspect -f '{{.State.Pid}}' "$id")"
    deadline=$((SECONDS + 60))
    until nsenter -t "$pid" -n curl -fsS http://127.0.0.1:8080/devices 2>/dev/null |
        jq -e 'any(.[]; .polls > 0)' >/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "no poll within 60 s" >&2; return 1; }
        sleep 0.01
    done
    echo $((($(date +%s%N) - start) / 1000000))
    podman rm -f -t 0 "$id" >/dev/null
}

summary() {
    sort -n | awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "median %d ms, min %d, max %d, n %d\n", m, v[1], v[NR], NR}'
}

echo "image $ref ($(podman image inspect -f '{{.Digest}}' "$ref")), $N runs each"
echo -n "cold compile cache (fresh tmpfs): "
for _ in $(seq "$N"); do run_once --tmpfs /cache:rw,size=64m,mode=1777; done | summary
run_once -v "$T/warm:/cache" >/dev/null # fills the warm cache
echo -n "warm compile cache (filled directory): "
for _ in $(seq "$N"); do run_once -v "$T/warm:/cache"; done | summary
