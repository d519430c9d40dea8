#!/usr/bin/env bash
# The release images, proven: built twice from one commit with the same digests; the
# rendered manifests name exactly those digests; the archives load into podman, import
# with ctr (containerd, as k3s does) and copy into a registry (docker-registry on
# loopback), keeping their digests; each image holds
# exactly its file tree (no shell), owned 0:0 at the commit time; the native limb image
# runs the standalone example in runc as uid 65532 with a read-only root, no capabilities,
# no new privileges and only a loopback network, and every device reaches Connected; the
# brain image validates a DeviceLink against the test API server on the host's loopback.
#
# Usage: scripts/test-images.sh [--skip-build] [--arch ARCH]...
#   --skip-build   image the binaries already in $OCTOPUS_BIN_DIR (default: build them)
#   --arch ARCH    architectures to release (default: amd64 arm64 armv7); amd64 is needed
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$ROOT/scripts/oci-tools.sh"

ARCHES=()
SKIP=()
while [ $# -gt 0 ]; do
    case "$1" in
        --skip-build) SKIP=(--skip-build); shift ;;
        --arch) IFS=, read -ra more <<<"$2"; ARCHES+=("${more[@]}"); shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64 armv7)
[[ " ${ARCHES[*]} " == *" amd64 "* ]] || { echo "amd64 is needed: the images run on this machine" >&2; exit 2; }
ARCH_ARGS=()
for a in "${ARCHES[@]}"; do ARCH_ARGS+=(--arch "$a"); done

ensure_oci_tools registry containerd
"$ROOT/scripts/build-kube.sh" >/dev/null
cd "$ROOT"

T="$(mktemp -d "${TMPDIR:-/tmp}/octopus-images.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    oci_storage_end
    rm -rf "$T"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 100 ms until it succeeds, or fails
# the test with WHAT after SECONDS.
wait_for() {
    local limit="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$what not within ${limit}s"
        sleep 0.1
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

echo "== release twice from the same binaries"
"$ROOT/scripts/release.sh" --out "$T/a" "${ARCH_ARGS[@]}" "${SKIP[@]}"
"$ROOT/scripts/release.sh" --out "$T/b" "${ARCH_ARGS[@]}" --skip-build
BIN_DIR="${OCTOPUS_BIN_DIR:-$CACHE/release/bin}"
release_metadata "$(binaries_revision "${ARCHES[@]}")"
check_release "$T/a" "${ARCHES[@]}"
source "$T/a/digests.env"
# Every digest of both layouts: the indexes, and every manifest each one lists.
digests() {
    local dir="$1" d
    for d in $(jq -r '.manifests[].digest' "$dir/oci/index.json"); do
        echo "index $d"
        jq -r '.manifests[] | "  \(.platform.architecture)/\(.platform.variant // "") \(.digest)"' \
            "$dir/oci/blobs/sha256/${d#sha256:}"
    done
}
digests "$T/a" >"$T/digests-a"
digests "$T/b" >"$T/digests-b"
cat "$T/digests-a"
[ "$(grep -c '^index' "$T/digests-a")" = 2 ] || fail "the layout should hold two indexes"
diff "$T/digests-a" "$T/digests-b" || fail "two builds from one commit gave different digests"
diff "$T/a/SHA256SUMS" "$T/b/SHA256SUMS" || fail "two builds gave different archives or tarballs"
echo "ok: the same digests, archives and tarballs from both builds"

echo "== rendered manifests name exactly the release's digests"
# The digest of each index, from the index bytes themselves, not from what release.sh wrote.
limb_digest="sha256:$(skopeo inspect --raw "oci:$T/a/oci:$REGISTRY/limb:$VERSION" | sha256sum | cut -d' ' -f1)"
brain_digest="sha256:$(skopeo inspect --raw "oci:$T/a/oci:$REGISTRY/brain:$VERSION" | sha256sum | cut -d' ' -f1)"
check_images() {
    local dir="$1" registry="$2" got want
    got="$(kubectl kustomize "$dir" | sed -n 's/^ *- *image: *//p; s/^ *image: *//p' | tr -d '"' | sort -u)"
    want="$(printf '%s\n' "$registry/brain:$VERSION@$brain_digest" "$registry/limb:$VERSION@$limb_digest" | sort)"
    [ "$got" = "$want" ] || fail "$dir renders images
$got
want
$want"
}
check_images "$T/a/deploy" "$REGISTRY"
check_images "$T/a/overlays/registry" registry.example.com/octopus
# The chart in the repository renders the same images with the release's values file.
cargo run --locked -q -p xtask -- manifests --values "$T/a/deploy/values-release.yaml" --out "$T/chart" >/dev/null
check_images "$T/chart" "$REGISTRY"
echo "ok: kustomize (plain and registry overlay) and the chart name $limb_digest and $brain_digest"

echo "== image contents: the file tree, owners, modes and times of every platform"
expected_tree() {
    local name="$1" when
    when="$(TZ=UTC date -d "@$SOURCE_DATE_EPOCH" '+%Y-%m-%d %H:%M')"
    printf '%s\n' \
        "drwxr-xr-x 0/0 $when etc/" \
        "-rw-r--r-- 0/0 $when etc/group" \
        "-rw-r--r-- 0/0 $when etc/passwd" \
        "drwxr-xr-x 0/0 $when etc/ssl/" \
        "drwxr-xr-x 0/0 $when etc/ssl/certs/" \
        "-rw-r--r-- 0/0 $when etc/ssl/certs/ca-certificates.crt" \
        "drwxr-xr-x 0/0 $when usr/" \
        "drwxr-xr-x 0/0 $when usr/local/" \
        "drwxr-xr-x 0/0 $when usr/local/bin/" \
        "-rwxr-xr-x 0/0 $when usr/local/bin/$name"
}
for name in limb brain; do
    ref="$REGISTRY/$name:$VERSION"
    for m in $(skopeo inspect --raw "oci:$T/a/oci:$ref" | jq -r '.manifests[].digest'); do
        manifest="$T/a/oci/blobs/sha256/${m#sha256:}"
        [ "$(jq '.layers | length' "$manifest")" = 1 ] || fail "$name $m has more than one layer"
        layer="$T/a/oci/blobs/sha256/$(jq -r '.layers[0].digest' "$manifest" | cut -d: -f2)"
        config="$T/a/oci/blobs/sha256/$(jq -r '.config.digest' "$manifest" | cut -d: -f2)"
        # Owner, mode, time and name of every entry (tar's columns without the size).
        TZ=UTC tar --numeric-owner -tvzf "$layer" | awk '{print $1, $2, $4, $5, $6}' |
            sed 's| \./| |; s| /$||' | grep -v ' \.\?$' | LC_ALL=C sort >"$T/tree"
        if ! diff <(expected_tree "$name" | LC_ALL=C sort) "$T/tree"; then
            fail "$name $m holds another file tree"
        fi
        jq -e --arg src "$SOURCE_URL" --arg rev "$REVISION" --arg ver "$VERSION" --arg name "$name" '
            .config.User == "65532:65532"
            and .config.Entrypoint == ["/usr/local/bin/\($name)"]
            and .config.Labels["org.opencontainers.image.source"] == $src
            and .config.Labels["org.opencontainers.image.revision"] == $rev
            and .config.Labels["org.opencontainers.image.version"] == $ver
            and .config.Labels["org.opencontainers.image.licenses"] == "Apache-2.0"' \
            "$config" >/dev/null || fail "$name $m config: $(jq -c .config "$config")"
    done
done
echo "ok: every image is its binary, the CA bundle, passwd and group; 0:0; user 65532; labels set"

oci_storage_begin
echo "== archives: podman load, and skopeo copy to a registry on loopback"
podman load -q -i "$T/a/images/limb-$VERSION.oci.tar" >/dev/null
podman load -q -i "$T/a/images/brain-$VERSION.oci.tar" >/dev/null
for name in limb brain; do
    arch="$(podman image inspect -f '{{.Architecture}}' "$REGISTRY/$name:$VERSION")"
    [ "$arch" = amd64 ] || fail "podman loaded $name for $arch, not this machine's amd64"
done
reg_port="$(free_port)"
cat >"$T/registry.yml" <<EOF
version: 0.1
storage:
  filesystem: {rootdirectory: $T/registry}
http:
  addr: 127.0.0.1:$reg_port
log: {level: error}
EOF
docker-registry serve "$T/registry.yml" >"$T/registry.log" 2>&1 &
PIDS+=($!)
wait_for 30 "docker-registry on 127.0.0.1:$reg_port" curl -fsS "http://127.0.0.1:$reg_port/v2/"
for name in limb brain; do
    dest="127.0.0.1:$reg_port/octopus/$name:$VERSION"
    skopeo copy -q --all --preserve-digests --dest-tls-verify=false \
        "oci-archive:$T/a/images/$name-$VERSION.oci.tar" "docker://$dest"
    got="sha256:$(skopeo inspect --raw --tls-verify=false "docker://$dest" | sha256sum | cut -d' ' -f1)"
    want="$([ "$name" = limb ] && echo "$limb_digest" || echo "$brain_digest")"
    [ "$got" = "$want" ] || fail "the registry holds $name as $got, not $want"
done
# containerd's importer is the one behind `ctr images import` and `k3s ctr images import`:
# a private containerd (no CRI plugin, its own socket and directories) imports both.
ctrd="$T/containerd"
mkdir -p "$ctrd"
cat >"$ctrd/config.toml" <<EOF
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ctrd/sock"
EOF
containerd --config "$ctrd/config.toml" >"$ctrd/log" 2>&1 &
PIDS+=($!)
wait_for 30 "containerd on $ctrd/sock" ctr --address "$ctrd/sock" version
for name in limb brain; do
    ctr --address "$ctrd/sock" -n k8s.io images import --all-platforms \
        "$T/a/images/$name-$VERSION.oci.tar" >/dev/null
done
# REF, DIGEST and PLATFORMS of each image containerd now holds.
ctr --address "$ctrd/sock" -n k8s.io images ls | awk 'NR > 1 {print $1, $3, $(NF - 1)}' | sort >"$T/ctr-images"
platforms="$(skopeo inspect --raw "oci:$T/a/oci:$REGISTRY/limb:$VERSION" |
    jq -r '.manifests[].platform | [.os, .architecture, .variant // empty] | join("/")' | sort | paste -sd,)"
printf '%s\n' "$REGISTRY/brain:$VERSION $brain_digest" "$REGISTRY/limb:$VERSION $limb_digest" >"$T/ctr-want"
diff "$T/ctr-want" <(awk '{print $1, $2}' "$T/ctr-images") || fail "ctr imported other names or digests"
while read -r _ _ listed; do
    [ "$(tr ',' '\n' <<<"$listed" | sort | paste -sd,)" = "$platforms" ] ||
        fail "ctr lists platforms $listed, want $platforms"
done <"$T/ctr-images"
echo "ok: podman loaded the amd64 images; the registry and ctr hold both indexes with the release digests"

LIMB_REF="$REGISTRY/limb:$VERSION"
BRAIN_REF="$REGISTRY/brain:$VERSION"
echo "== no shell in the image"
if podman run --rm --network none --entrypoint /bin/sh "$LIMB_REF" -c true >"$T/sh.log" 2>&1; then
    fail "/bin/sh ran in the limb image"
fi
grep -qi "no such file\|not found" "$T/sh.log" || fail "/bin/sh failed for another reason: $(cat "$T/sh.log")"
echo "ok: /bin/sh does not exist in the image ($(head -c 200 "$T/sh.log" | tr '\n' ' '))"

echo "== the native limb image runs the standalone example, confined"
links="$T/links"
mkdir -p "$links"
cp examples/standalone/*.yaml "$links/"
for name in $(sed -n 's|.*adaptors\.edge\.cattle\.io/\([a-z0-9-]*\).*|\1|p' "$links"/*.yaml | sort -u); do
    cp "$OCTOPUS_ADAPTORS_DIR/adaptor_${name//-/_}.wasm" "$links/"
done
chmod -R a+rX "$links"
devices_expected="$(grep -l '^kind: DeviceLink' "$links"/*.yaml | wc -l)"
podman run -d --name octopus-limb-image-test \
    --read-only --read-only-tmpfs=false --cap-drop=all --security-opt no-new-privileges \
    --network none --tmpfs /cache:rw,size=64m,mode=1777 -v "$links:/links:ro" \
    "$LIMB_REF" --cache-dir /cache standalone /links --listen 127.0.0.1:8080 --output none >/dev/null
pid="$(podman inspect -f '{{.State.Pid}}' octopus-limb-image-test)"
[ "$pid" -gt 0 ] || fail "the limb container has no process"
in_limb() { nsenter -t "$pid" -n "$@"; }
status="/proc/$pid/status"
[ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' "$status")" = 65532655326553265532 ] || fail "uids: $(grep Uid "$status")"
[ "$(awk '/^Gid:/ {print $2 $3 $4 $5}' "$status")" = 65532655326553265532 ] || fail "gids: $(grep Gid "$status")"
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
    [ "$(awk -v c="$cap:" '$1 == c {print $2}' "$status")" = 0000000000000000 ] || fail "$(grep "$cap" "$status")"
done
[ "$(awk '/^NoNewPrivs:/ {print $2}' "$status")" = 1 ] || fail "no_new_privs is not set"
# The root mount is read-only; the only writable mount is the /cache tmpfs.
awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo" | grep -q '^ro' || fail "the root file system is writable"
writable="$(awk '$6 ~ /^rw/ && $5 !~ "^/(proc|dev|sys)" {print $5}' "/proc/$pid/mountinfo" | sort -u | tr '\n' ' ')"
[ "$writable" = "/cache " ] || fail "writable mounts besides /cache: $writable"
links_up="$(in_limb ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
[ "$links_up" = "lo " ] || fail "the container has network interfaces besides lo: $links_up"
wait_for 60 "limb /healthz in the container" in_limb curl -fsS http://127.0.0.1:8080/healthz
connected() {
    in_limb curl -fsS http://127.0.0.1:8080/devices >"$T/devices.json" || return 1
    jq -e --argjson n "$devices_expected" '
        (if type == "array" then . else (.devices // [.[]]) end) as $d
        | ($d | length) == $n
          and all($d[]; [.. | objects | select(.type? == "DeviceConnected") | .status] == ["True"])' \
        "$T/devices.json"
}
if ! (wait_for 60 "every device Connected" connected); then
    cat "$T/devices.json" >&2 || true
    podman logs --tail 30 octopus-limb-image-test >&2
    exit 1
fi
echo "ok: uid/gid 65532, no capabilities, no_new_privs, read-only root, only lo; $devices_expected devices Connected"
podman stop -t 5 octopus-limb-image-test >/dev/null

echo "== the brain image validates a DeviceLink against the test API server on loopback"
kube="$T/kube"
mkdir -p "$kube"
(
    cd "$kube"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out server.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    printf 'test-admin-token,admin,uid-admin,system:masters\n' >tokens.csv
)
etcd_port="$(free_port)"
peer_port="$(free_port)"
api_port="$(free_port)"
etcd --name t --data-dir "$kube/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "t=http://127.0.0.1:$peer_port" --listen-metrics-urls "" >"$kube/etcd.log" 2>&1 &
PIDS+=($!)
"$CACHE/kube/bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$kube/server.crt" --tls-private-key-file "$kube/server.key" \
    --client-ca-file "$kube/ca.crt" --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$kube/sa.pub" --service-account-signing-key-file "$kube/sa.key" \
    --token-auth-file "$kube/tokens.csv" --authorization-mode RBAC \
    --service-cluster-ip-range 10.96.0.0/24 --endpoint-reconciler-type none >"$kube/apiserver.log" 2>&1 &
PIDS+=($!)
# One kubeconfig for the host and the container: the CA inline, the server on loopback.
mkdir -p "$kube/config"
cat >"$kube/config/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: t, cluster: {server: "https://127.0.0.1:$api_port", certificate-authority-data: "$(base64 -w0 "$kube/ca.crt")"}}]
users: [{name: admin, user: {token: test-admin-token}}]
contexts: [{name: t, context: {cluster: t, user: admin, namespace: default}}]
current-context: t
EOF
chmod -R a+rX "$kube/config"
export KUBECONFIG="$kube/config/kubeconfig"
wait_for 90 "kube-apiserver ready (see $kube/apiserver.log)" kubectl get namespace default
kubectl apply -f "$T/a/deploy/crds/" >/dev/null
wait_for 30 "the CRDs established" kubectl wait --for condition=established --timeout=1s \
    crd/devicelinks.edge.cattle.io crd/dummyspecialdevices.devices.edge.cattle.io
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata: {name: edge-worker}
EOF
brain_port="$(free_port)"
podman run -d --name octopus-brain-image-test \
    --read-only --read-only-tmpfs=false --cap-drop=all --security-opt no-new-privileges \
    --network host -v "$kube/config:/kube:ro" -e KUBECONFIG=/kube/kubeconfig \
    "$BRAIN_REF" run --listen "127.0.0.1:$brain_port" --identity brain-image --lease-namespace default >/dev/null
kubectl apply -f examples/standalone/living-room-fan.yaml >/dev/null
model_existed() {
    [ "$(kubectl get devicelink living-room-fan \
        -o jsonpath='{.status.conditions[?(@.type=="ModelExisted")].status}')" = True ]
}
if ! (wait_for 60 "the brain in the container validating living-room-fan" model_existed); then
    podman logs --tail 30 octopus-brain-image-test >&2
    exit 1
fi
holder="$(kubectl get lease -n default octopus-brain -o jsonpath='{.spec.holderIdentity}')"
[ "$holder" = brain-image ] || fail "the lease is held by '$holder', not the brain in the container"
echo "ok: the brain in the container leads and validated the link: $(kubectl get devicelink living-room-fan -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}')"
echo "== images ok"
