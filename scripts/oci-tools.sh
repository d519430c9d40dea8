# Shared by scripts/release.sh, scripts/test-images.sh and scripts/bench-image.sh (source
# it after env.sh): the daemonless OCI tools from Debian, a private container store, and
# the image assembly. Nothing here writes tar or manifest bytes itself: buildah builds the
# images and the index, skopeo copies them between the OCI layout and the archives.

# buildah (assembles images), skopeo (copies and inspects), podman with runc (runs them
# in the tests), and the CA bundle the images ship. Idempotent, like ensure_peers.
ensure_oci_tools() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v skopeo >/dev/null || missing+=(skopeo)
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    local extra
    for extra in "$@"; do
        case "$extra" in
            registry) command -v docker-registry >/dev/null || missing+=(docker-registry) ;;
            containerd) command -v containerd >/dev/null || missing+=(containerd) ;;
            *) echo "ensure_oci_tools: unknown extra $extra" >&2; return 1 ;;
        esac
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends "${missing[@]}"
    fi
}

# The OCI platform of one of our architecture names: "ARCH VARIANT" (variant may be empty).
oci_platform() {
    case "$1" in
        amd64) echo "amd64 " ;;
        arm64) echo "arm64 v8" ;;
        armv7) echo "arm v7" ;;
        *) echo "unknown architecture $1 (amd64, arm64 or armv7)" >&2; return 1 ;;
    esac
}

# VERSION, REVISION, SOURCE_DATE_EPOCH (the commit time), SOURCE_URL and LICENSES of
# commit REV (default HEAD), from its workspace Cargo.toml; REGISTRY, where the images are
# named to live: $OCTOPUS_REGISTRY, or ghcr.io/OWNER for a github.com/OWNER/REPO repository.
release_metadata() {
    local rev="${1:-HEAD}" toml
    toml="$(git -C "$ROOT" show "$rev:Cargo.toml")"
    VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' <<<"$toml")"
    LICENSES="$(sed -n '/^\[workspace.package\]/,/^\[/s/^license *= *"\(.*\)"/\1/p' <<<"$toml")"
    SOURCE_URL="$(sed -n '/^\[workspace.package\]/,/^\[/s/^repository *= *"\(.*\)"/\1/p' <<<"$toml")"
    REVISION="$(git -C "$ROOT" rev-parse "$rev^{commit}")"
    SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct "$REVISION")"
    export SOURCE_DATE_EPOCH
    local owner
    owner="$(sed -n 's|^https://github.com/\([^/]*\)/.*|\1|p' <<<"$SOURCE_URL")"
    REGISTRY="${OCTOPUS_REGISTRY:-ghcr.io/${owner:-octopus}}"
    if [ -z "$VERSION" ] || [ -z "$LICENSES" ] || [ -z "$SOURCE_URL" ]; then
        echo "version, license or repository missing from [workspace.package] in $rev:Cargo.toml" >&2
        return 1
    fi
}

# A private container store in a temporary directory, for buildah, skopeo and podman
# (CONTAINERS_STORAGE_CONF and CONTAINERS_CONF point at it): the host's store is never
# touched, nothing is left behind, and parallel runs do not share state.
# - Driver vfs (OCTOPUS_STORAGE_DRIVER overrides): it works on any file system; overlay
#   works on this machine's ext4 too, but vfs needs no kernel support, and our images
#   are one small layer each, so copying layers costs nothing.
# - Runtime runc: crun 1.8 refuses this host's hybrid cgroups (v1 controllers plus a v2
#   hierarchy with hugetlb enabled: "cgroups in hybrid mode not supported"); runc runs.
# - Limits: podman as root asks for 1048576 files and 4194304 processes, above a
#   sandboxed host's hard limits (files 20000 here), and setrlimit fails in the runtime;
#   containers get this shell's file limit and 8192 processes instead.
oci_storage_begin() {
    OCI_WORK="$(mktemp -d "${TMPDIR:-/tmp}/octopus-oci.XXXXXX")"
    mkdir -p "$OCI_WORK/storage" "$OCI_WORK/run" "$OCI_WORK/tmp"
    cat >"$OCI_WORK/storage.conf" <<EOF
[storage]
driver = "${OCTOPUS_STORAGE_DRIVER:-vfs}"
graphroot = "$OCI_WORK/storage"
runroot = "$OCI_WORK/run"
EOF
    cat >"$OCI_WORK/containers.conf" <<EOF
[engine]
tmp_dir = "$OCI_WORK/tmp"
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$OCI_WORK/events.log"
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=$(ulimit -Sn):$(ulimit -Hn)", "nproc=8192:8192"]
EOF
    export CONTAINERS_STORAGE_CONF="$OCI_WORK/storage.conf"
    export CONTAINERS_CONF="$OCI_WORK/containers.conf"
}

# Removes the private store (podman's and buildah's files are root-owned, some read-only).
oci_storage_end() {
    [ -n "${OCI_WORK:-}" ] && [ -d "$OCI_WORK" ] || return 0
    podman rm -af -t 0 >/dev/null 2>&1 || true
    buildah rm -a >/dev/null 2>&1 || true
    # vfs layers can hold mount points of running containers: unmount before deleting.
    grep -o " $OCI_WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    chmod -R u+w "$OCI_WORK" 2>/dev/null || true
    rm -rf "$OCI_WORK"
    OCI_WORK=""
}

# The file tree of one image: the binary, the CA bundle, passwd and group with root and
# nonroot (65532), every directory 0755, owned by whoever runs this (buildah copy makes
# them 0:0).
image_rootfs() {
    local name="$1" bin="$2" dir="$3"
    (
        umask 022
        rm -rf "$dir"
        mkdir -p "$dir/etc/ssl/certs" "$dir/usr/local/bin"
        install -m 0644 /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
        printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$dir/etc/passwd"
        printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
        chmod 0644 "$dir/etc/passwd" "$dir/etc/group"
        install -m 0755 "$bin" "$dir/usr/local/bin/$name"
        find "$dir" -type d -exec chmod 0755 {} +
    )
}

# Builds image NAME for every ARCH from $BIN_DIR/ARCH/NAME with buildah, gathers them in a
# manifest list, and pushes it with all its images to the OCI layout $OUT/oci as
# $REGISTRY/NAME:$VERSION; then writes $OUT/images/NAME-$VERSION.oci.tar, an oci-archive
# (the OCI layout of that one index, as a tar). skopeo writes the layout; GNU tar packs it
# with sorted names, the commit time and 0:0, because skopeo's own oci-archive carries the
# wall-clock time of its temporary files, so its bytes would differ on every run while its
# digests stay. Needs release_metadata and oci_storage_begin.
build_image_index() {
    local name="$1" out="$2"
    shift 2
    local ref="$REGISTRY/$name:$VERSION" list="localhost/octopus-release/$name-list:$VERSION"
    buildah manifest rm "$list" >/dev/null 2>&1 || true
    buildah manifest create "$list" >/dev/null
    local arch platform goarch variant ctr id
    for arch in "$@"; do
        platform="$(oci_platform "$arch")"
        goarch="${platform% *}"
        variant="${platform#* }"
        image_rootfs "$name" "$BIN_DIR/$arch/$name" "$OCI_WORK/rootfs-$name-$arch"
        ctr="$(buildah from --arch "$goarch" ${variant:+--variant "$variant"} --os linux scratch)"
        buildah copy --quiet --chown 0:0 "$ctr" "$OCI_WORK/rootfs-$name-$arch" / >/dev/null
        buildah config --os linux --arch "$goarch" ${variant:+--variant "$variant"} \
            --user 65532:65532 --entrypoint "[\"/usr/local/bin/$name\"]" --workingdir / \
            --label "org.opencontainers.image.source=$SOURCE_URL" \
            --label "org.opencontainers.image.revision=$REVISION" \
            --label "org.opencontainers.image.version=$VERSION" \
            --label "org.opencontainers.image.licenses=$LICENSES" \
            --label "org.opencontainers.image.title=octopus-$name" \
            --created-by "scripts/release.sh: buildah copy of the binary, CA bundle, passwd and group" \
            "$ctr"
        id="$(buildah commit --quiet --rm --format oci --identity-label=false \
            --timestamp "$SOURCE_DATE_EPOCH" "$ctr" "localhost/octopus-release/$name:$VERSION-$arch")"
        buildah manifest add --os linux --arch "$goarch" ${variant:+--variant "$variant"} \
            "$list" "containers-storage:$id" >/dev/null
    done
    mkdir -p "$out/oci" "$out/images"
    buildah manifest push --quiet --all --format oci "$list" "oci:$out/oci:$ref"
    local one="$OCI_WORK/layout-$name"
    rm -rf "$one"
    skopeo copy --quiet --all --preserve-digests "oci:$out/oci:$ref" "oci:$one:$ref"
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --mode=u+rw,go+r,go-w -C "$one" -cf "$out/images/$name-$VERSION.oci.tar" \
        oci-layout index.json blobs
}

# The digest of the index REF in the OCI layout DIR (what a registry and the manifests name).
layout_digest() {
    local dir="$1" ref="$2"
    jq -er --arg ref "$ref" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $ref) | .digest' \
        "$dir/index.json"
}

# digests.env (shell-sourceable), the Helm values that pin the images by tag and digest,
# the plain manifests rendered with them into $OUT/deploy, and $OUT/overlays/registry,
# which renames the images for a registry of one's own.
write_release_deploy() {
    local out="$1" limb brain
    limb="$(layout_digest "$out/oci" "$REGISTRY/limb:$VERSION")"
    brain="$(layout_digest "$out/oci" "$REGISTRY/brain:$VERSION")"
    cat >"$out/digests.env" <<EOF
VERSION=$VERSION
REVISION=$REVISION
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH
REGISTRY=$REGISTRY
LIMB_DIGEST=$limb
BRAIN_DIGEST=$brain
LIMB_IMAGE=$REGISTRY/limb:$VERSION@$limb
BRAIN_IMAGE=$REGISTRY/brain:$VERSION@$brain
EOF
    mkdir -p "$out/deploy"
    cat >"$out/deploy/values-release.yaml" <<EOF
# Written by scripts/release.sh: the images of release $VERSION ($REVISION), by tag and
# digest. helm install octopus deploy/helm/octopus -f values-release.yaml
image:
  registry: $REGISTRY
  tag: "$VERSION"
limb:
  image:
    digest: $limb
brain:
  image:
    digest: $brain
EOF
    (cd "$ROOT" && cargo run --locked -q -p xtask -- manifests \
        --values "$out/deploy/values-release.yaml" --out "$out/deploy" >/dev/null)
    # Outside deploy/: kustomize refuses an overlay inside the directory of its base.
    mkdir -p "$out/overlays/registry"
    cat >"$out/overlays/registry/kustomization.yaml" <<EOF
# The manifests of release $VERSION with the images from a registry of your own, after
#   skopeo copy --all oci-archive:images/limb-$VERSION.oci.tar docker://REGISTRY/octopus/limb:$VERSION
# (and brain the same; see docs/release.md). Set newName to your registry, then
#   kubectl apply -k overlays/registry
# The tag and digest stay: a copy with --all keeps the digest.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../deploy
images:
  - name: $REGISTRY/limb
    newName: registry.example.com/octopus/limb
  - name: $REGISTRY/brain
    newName: registry.example.com/octopus/brain
EOF
}

# The commit the binaries in $BIN_DIR were built from (scripts/build-cross.sh writes it in
# ARCH/BUILD), the same for every ARCH; HEAD for binaries without a BUILD file.
binaries_revision() {
    local arch rev="" this
    for arch in "$@"; do
        this="$(sed -n 's/^commit //p' "$BIN_DIR/$arch/BUILD" 2>/dev/null)"
        this="${this:-HEAD}"
        if [ -n "$rev" ] && [ "$this" != "$rev" ]; then
            echo "the binaries in $BIN_DIR come from different commits ($rev, $this)" >&2
            return 1
        fi
        rev="$this"
    done
    echo "$rev"
}

# Each index names exactly the platforms asked for; each archive holds the same
# index digest as the layout; every checksum verifies.
check_release() {
    local out="$1" name ref want got digest
    shift
    source "$out/digests.env"
    want="$(for a in "$@"; do oci_platform "$a" | sed 's/ $//; s| |/|'; done | sort | tr '\n' ' ')"
    for name in limb brain; do
        ref="$REGISTRY/$name:$VERSION"
        got="$(skopeo inspect --raw "oci:$out/oci:$ref" |
            jq -r '.manifests[].platform | [.architecture, .variant // empty] | join("/")' |
            sort | tr '\n' ' ')"
        [ "$got" = "$want" ] || { echo "check: $name index has platforms '$got', want '$want'" >&2; return 1; }
        digest="sha256:$(skopeo inspect --raw "oci-archive:$out/images/$name-$VERSION.oci.tar" | sha256sum | cut -d' ' -f1)"
        want_digest="$(layout_digest "$out/oci" "$ref")"
        [ "$digest" = "$want_digest" ] || { echo "check: $name archive index $digest, layout $want_digest" >&2; return 1; }
    done
    (cd "$out" && sha256sum --quiet -c SHA256SUMS)
    echo "check: indexes, archives and checksums agree"
}
