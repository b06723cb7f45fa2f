#!/usr/bin/env bash
# Builds kube-apiserver from k8s.io/kubernetes (the version interop/go.mod
# requires) once, and caches it by version: the next call prints the path at
# once. Prints the binary's path on stdout.
#
#   TENURE_KUBE_APISERVER=/path/to/kube-apiserver   use that one instead
set -euo pipefail
cd "$(dirname "$0")/../interop"
# The machine's Go (1.26.8) builds k8s.io/kubernetes v1.37 (go 1.26.0); a
# module needing a newer one names GOTOOLCHAIN=go1.27.3 (the proxy serves it).
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=-mod=mod

if [ -n "${TENURE_KUBE_APISERVER:-}" ]; then
  echo "$TENURE_KUBE_APISERVER"
  exit 0
fi
command -v go >/dev/null 2>&1 || {
  echo "kube-apiserver.sh: go missing (apt-get install -y golang, or https://go.dev/dl)" >&2
  exit 1
}
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tenure
bin=$cache/kube-apiserver-$version
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  start=$(date +%s)
  echo "kube-apiserver.sh: building kube-apiserver $version (cached in $cache)" >&2
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version" \
    -o "$bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$bin.tmp" "$bin"
  echo "kube-apiserver.sh: built in $(( $(date +%s) - start )) s" >&2
fi
echo "$bin"
