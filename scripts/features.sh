#!/usr/bin/env bash
# Every crate builds alone in every feature set a user can pick, with no
# dev-dependency and no other workspace member lending it features (both
# hid a CLI that did not build for `make demo`). Then each published
# crate's docs, built alone as docs.rs builds them (its metadata's
# features), warnings denied.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-hack >/dev/null 2>&1 || cargo hack --version >/dev/null 2>&1 || {
  echo "features.sh: cargo-hack missing: cargo install --locked cargo-hack (scripts/install-deps.sh does)" >&2
  exit 1
}

# tenure-k8s and the facade's plain `k8s` need the application's Kubernetes
# version feature (k8s-openapi refuses to build without one): they are
# checked below with one, as a user builds them.
cargo hack check --workspace --each-feature --no-dev-deps \
  --exclude tenure-k8s --exclude tenure
cargo hack check -p tenure --feature-powerset --no-dev-deps --exclude-features k8s
# tenure-k8s with its own `latest`, and with a user's pick of the oldest
# version k8s-openapi 0.29 supports (the feature set docs tell users to use).
cargo hack check -p tenure-k8s --no-dev-deps --features latest
cargo hack check -p tenure-k8s --no-dev-deps --features k8s-openapi/earliest

# Docs per published crate, with the features docs.rs would use.
doc() { # PACKAGE [FEATURES]
  local pkg=$1; shift
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p "$pkg" "$@"
}
doc tenure-core --features test-hooks
doc tenure-redis
doc tenure-etcd
doc tenure-k8s --features latest
doc tenure-conformance --all-features
doc tenure --all-features
