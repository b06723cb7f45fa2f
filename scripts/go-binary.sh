#!/usr/bin/env bash
# Builds a Go program of interop/ once per source, cached by the hash of its
# go.mod, go.sum and Go files, and prints the binary's path:
#
#   bash scripts/go-binary.sh electors   # client-go's and Istio's electors
#   bash scripts/go-binary.sh etcd       # etcd 3.6's server, from the Go module proxy
#
# TENURE_GO_<NAME> (TENURE_GO_ELECTORS, TENURE_GO_ETCD) names a binary to use
# instead. kube-apiserver has its own script (cached by version).
set -euo pipefail
name=${1:?usage: go-binary.sh electors|etcd}
cd "$(dirname "$0")/../interop/$name"
# The machine's Go (1.26.8) builds these (go 1.26.0); a module needing a
# newer one names GOTOOLCHAIN=go1.27.3 (the proxy serves it).
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=-mod=mod
override_var="TENURE_GO_$(echo "$name" | tr '[:lower:]-' '[:upper:]_')"
if [ -n "${!override_var:-}" ]; then
  echo "${!override_var}"
  exit 0
fi
command -v go >/dev/null 2>&1 || {
  echo "go-binary.sh: go missing (Go >= 1.26 from https://go.dev/dl; the machine kind has it)" >&2
  exit 1
}
hash=$(cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tenure
bin=$cache/$name-$hash
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  start=$(date +%s)
  echo "go-binary.sh: building interop/$name (cached in $cache)" >&2
  go build -trimpath -o "$bin.tmp" .
  mv "$bin.tmp" "$bin"
  echo "go-binary.sh: built interop/$name in $(( $(date +%s) - start )) s" >&2
fi
echo "$bin"
