#!/usr/bin/env bash
# Builds etcd 3.6 (interop/etcd: etcd's own server main at the version its
# go.mod requires, from the Go module proxy) once per source, cached by the
# hash of its source and go.sum; prints the binary's path.
#
#   TENURE_ETCD_36=/path/to/etcd   use that one instead
set -euo pipefail
cd "$(dirname "$0")/../interop/etcd"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=-mod=mod
if [ -n "${TENURE_ETCD_36:-}" ]; then
  echo "$TENURE_ETCD_36"
  exit 0
fi
command -v go >/dev/null 2>&1 || {
  echo "etcd.sh: go missing (Go >= 1.26 from https://go.dev/dl; the machine kind has it)" >&2
  exit 1
}
hash=$(cat go.mod go.sum main.go | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tenure
bin=$cache/etcd-$hash
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  start=$(date +%s)
  echo "etcd.sh: building etcd from go.etcd.io/etcd/server/v3 (cached in $cache)" >&2
  go build -trimpath -o "$bin.tmp" .
  mv "$bin.tmp" "$bin"
  echo "etcd.sh: built in $(( $(date +%s) - start )) s" >&2
fi
echo "$bin"
