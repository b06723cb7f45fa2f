#!/usr/bin/env bash
# Builds the Go electors (interop/electors: client-go's and Istio's leader
# electors as JSON-printing candidates) once per source, cached by the hash
# of their source and go.sum; prints the binary's path.
#
#   TENURE_GO_ELECTORS=/path/to/electors   use that one instead
set -euo pipefail
cd "$(dirname "$0")/../interop/electors"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=-mod=mod
if [ -n "${TENURE_GO_ELECTORS:-}" ]; then
  echo "$TENURE_GO_ELECTORS"
  exit 0
fi
command -v go >/dev/null 2>&1 || {
  echo "electors.sh: go missing (Go >= 1.26 from https://go.dev/dl; the machine kind has it)" >&2
  exit 1
}
hash=$(cat go.mod go.sum main.go | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tenure
bin=$cache/electors-$hash
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  start=$(date +%s)
  echo "electors.sh: building the Go electors (cached in $cache)" >&2
  go build -trimpath -o "$bin.tmp" .
  mv "$bin.tmp" "$bin"
  echo "electors.sh: built in $(( $(date +%s) - start )) s" >&2
fi
echo "$bin"
