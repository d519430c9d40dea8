#!/usr/bin/env bash
# Builds the test cluster's control plane (kube-apiserver and kube-controller-manager
# 1.20.2, from Debian's source package; the controller manager runs the garbage
# collector) and installs etcd, caching the binaries in $OCTOPUS_CACHE/kube/bin.
# Offline except for Debian's archive; about 10 minutes cold on 2 cores, instant when
# cached.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
W="$CACHE/kube"
mkdir -p "$W"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
if [ -x "$W/bin/kube-apiserver" ] && [ -x "$W/bin/kube-controller-manager" ]; then
    if [ ${#need[@]} -gt 0 ]; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    exit 0
fi
# A deb-src twin of the machine's bookworm entry (same archive, same key).
if [ -z "$(apt-cache showsrc kubernetes 2>/dev/null)" ]; then
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
        | awk 'BEGIN{RS="";ORS="\n\n"} /Suites: bookworm bookworm-updates/' \
        | $sudo tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
    $sudo apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    golang-go rsync golang-github-modern-go-reflect2-dev etcd-server openssl make
cd "$W"
[ -f kubernetes_1.20.5+really1.20.2.orig.tar.gz ] || apt-get source --download-only kubernetes
[ -d kubernetes-1.20.2 ] || tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
cd kubernetes-1.20.2
# Kubernetes 1.20 vendors reflect2 1.0.1, which crashes at run time with Go >= 1.18.
R=vendor/github.com/modern-go/reflect2
rm -rf "$R" && mkdir -p "$R"
find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 -type f \
    \( -name '*.go' -o -name '*.s' -o -name LICENSE \) ! -name '*_test.go' -exec cp {} "$R"/ \;
mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
env GOPATH="$PWD/.go" CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
mkdir -p "$W/bin"
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$W/bin/"
"$W/bin/kube-apiserver" --version
"$W/bin/kube-controller-manager" --version
# The build tree (2 GB) is not needed any more.
cd "$W" && rm -rf kubernetes-1.20.2
