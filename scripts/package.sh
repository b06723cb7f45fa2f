#!/usr/bin/env bash
# What a release would publish, checked before a release: every published
# crate is packaged and built from its package alone (`cargo package`
# verifies: a missing file, a path-only dependency, a `#[path]` outside the
# crate fail here, not on crates.io). Then a store written outside the
# workspace, depending on the *packaged* tenure-core and tenure-conformance
# only (examples/file-store), passes the whole conformance suite.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

published=(tenure-core tenure-conformance tenure-redis tenure-etcd tenure-k8s tenure tenure-cli)
args=()
for p in "${published[@]}"; do args+=(-p "$p"); done
version=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="tenure-core"))')
# To verify the packages, cargo unpacks each into the registry's source
# cache (a directory per local registry, named `-<hash>`), under the same
# name and version every run, and reuses a copy unpacked by an earlier run:
# a second `make package` after a change verified against the old sources.
# Ours are not on crates.io: remove those copies first. Registry crates
# count as immutable, so what an earlier verification compiled of them is
# reused too: the packages are verified in a target directory of their own,
# started afresh each run (as on a fresh machine).
cargo_home=${CARGO_HOME:-$HOME/.cargo}
for p in "${published[@]}"; do
  rm -rf "$cargo_home"/registry/src/-*/"$p-$version" "$cargo_home"/registry/cache/-*/"$p-$version.crate"
done
verify=target/package-verify
rm -rf "$verify"
packaged=$verify/package
echo "package.sh: cargo package ${published[*]}" >&2
# --allow-dirty: CI runs on a clean clone; a developer may have edits.
# tenure-k8s builds only with a Kubernetes version feature (the user picks
# one); verify it with `latest`, as its docs.rs build does.
CARGO_TARGET_DIR="$root/$verify" cargo package --allow-dirty "${args[@]}" --features tenure-k8s/latest
for p in "${published[@]}"; do
  crate=$(ls "$packaged/$p-"[0-9]*.crate | sort -V | tail -1)
  echo "package.sh: $(basename "$crate"): $(tar -tzf "$crate" | wc -l) files: $(tar -tzf "$crate" | sed 's|^[^/]*/||' | grep -v '^Cargo.toml.orig$' | tr '\n' ' ')" >&2
done

# The outside store, on the packaged crates (as crates.io would serve them).
work=target/outside-store
rm -rf "$work"
mkdir -p "$work"
cp -r examples/file-store/. "$work/"
cat >>"$work/Cargo.toml" <<TOML

# Added by scripts/package.sh: the crates \`cargo package\` just built.
[patch.crates-io]
tenure-core = { path = "$root/$packaged/tenure-core-$version" }
tenure-conformance = { path = "$root/$packaged/tenure-conformance-$version" }
TOML
cp Cargo.lock "$work/Cargo.lock"
echo "package.sh: the outside store's conformance suite (examples/file-store)" >&2
CARGO_TARGET_DIR="$root/target/outside-store-target" \
  cargo test --manifest-path "$work/Cargo.toml" -- --test-threads=2
