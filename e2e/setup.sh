#!/usr/bin/env bash
# Installs what imagedrop's tests, demo and benchmark need on a fresh Debian
# 12 machine, and builds containerd 2.x and the Kubernetes node binaries
# (for e2e/k8s) once into a cache outside the repo. Safe to run again: it
# only does what is missing.
set -euo pipefail

CONTAINERD2_VERSION=${CONTAINERD2_VERSION:-v2.4.2}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${IMAGEDROP_CACHE:-/var/cache/imagedrop}
bindir="$CACHE/containerd-$CONTAINERD2_VERSION/bin"
k8sdir="$CACHE/k8s-build"

need=()
for tool in containerd:containerd docker-registry:docker-registry promtool:prometheus zstd:zstd lz4:lz4 bzip2:bzip2 runc:runc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
# GNU time (not the shell keyword) gives the benchmark imagedrop's peak RSS.
[ -x /usr/bin/time ] || need+=(time)
# The single-node Kubernetes of e2e/k8s: etcd, and the CNI plugins of its
# pod network.
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$bindir/containerd" ] || [ ! -x "$bindir/ctr" ] || [ ! -x "$bindir/containerd-shim-runc-v2" ]; then
  echo "setup: building containerd $CONTAINERD2_VERSION into $bindir (about 3 minutes, once)" >&2
  mkdir -p "$bindir"
  tmp=$(mktemp -d)
  (cd "$tmp" && GOBIN="$bindir" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -tags "no_btrfs no_devmapper no_zfs" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION")
  rm -rf "$tmp"
fi

# kube-apiserver, kube-controller-manager, kube-scheduler and kubelet for
# e2e/k8s. `go install` refuses k8s.io/kubernetes (its go.mod replaces the
# staging modules with ./staging/...), so a throwaway module requires it and
# replaces each staging module with its published v0.X.Y twin.
k8s_built() {
  grep -q "k8s.io/kubernetes $K8S_VERSION\$" "$k8sdir/go.mod" 2>/dev/null || return 1
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    [ -x "$k8sdir/bin/$b" ] || return 1
  done
}
if ! k8s_built; then
  echo "setup: building Kubernetes $K8S_VERSION into $k8sdir/bin (10-15 minutes on 2 cores, once)" >&2
  mkdir -p "$k8sdir/bin"
  staging="v0.${K8S_VERSION#v1.}" # v1.37.2 -> v0.37.2
  (
    cd "$k8sdir"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    rm -f go.mod go.sum
    go mod init k8sbuild >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod" | while read -r m; do
      go mod edit -replace "$m=$m@$staging"
    done
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
    go mod tidy
    for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
      go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
        -o "bin/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "bin/$b.tmp" "bin/$b"
    done
  )
fi
# staticcheck for `make lint`.
if [ ! -x "$CACHE/bin/staticcheck" ]; then
  echo "setup: installing staticcheck into $CACHE/bin" >&2
  (cd /tmp && GOBIN="$CACHE/bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2)
fi
# A static kubectl for the chart's uninstall hook and helm test (e2e/k8s
# packages it as an image), from the same k8s.io/kubernetes module.
if [ ! -x "$CACHE/bin/kubectl-$K8S_VERSION" ]; then
  echo "setup: building kubectl $K8S_VERSION into $CACHE/bin (a few minutes, once)" >&2
  tmp=$(mktemp -d)
  cp "$k8sdir/go.mod" "$k8sdir/go.sum" "$tmp/"
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubectl"\n' >"$tmp/tools.go"
  (cd "$tmp" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$CACHE/bin/kubectl-$K8S_VERSION.tmp" k8s.io/kubernetes/cmd/kubectl &&
    mv "$CACHE/bin/kubectl-$K8S_VERSION.tmp" "$CACHE/bin/kubectl-$K8S_VERSION")
  rm -rf "$tmp"
fi
# helm for the chart in deploy/chart (e2e/k8s), keyed by version.
if [ ! -x "$CACHE/bin/helm-$HELM_VERSION" ]; then
  echo "setup: building helm $HELM_VERSION into $CACHE/bin (about 3 minutes, once)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" &&
    mv "$tmp/helm" "$CACHE/bin/helm-$HELM_VERSION")
  rm -rf "$tmp"
fi
ln -sfn "helm-$HELM_VERSION" "$CACHE/bin/helm"
echo "$bindir/containerd"
