#!/usr/bin/env bash
# Installs what imagedrop's tests, demo and benchmark need on a fresh Debian
# 12 machine, and builds containerd 2.x once into a cache outside the repo.
# Safe to run again: it only does what is missing.
set -euo pipefail

CONTAINERD2_VERSION=${CONTAINERD2_VERSION:-v2.4.2}
CACHE=${IMAGEDROP_CACHE:-/var/cache/imagedrop}
bindir="$CACHE/containerd-$CONTAINERD2_VERSION/bin"

need=()
for tool in containerd:containerd docker-registry:docker-registry promtool:prometheus zstd:zstd lz4:lz4 bzip2:bzip2 runc:runc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
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
echo "$bindir/containerd"
