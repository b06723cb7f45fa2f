.PHONY: test lint demo package

# Three candidates in one process; needs nothing but Rust.
demo:
	cargo run -q -p tenure-cli --no-default-features -- demo

# Installs redis-server, etcd and protoc when missing, then runs every test.
test:
	bash scripts/test.sh

# Formatting, lints, every crate's feature sets built alone (cargo-hack,
# installed by scripts/install-deps.sh) and each published crate's docs.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	python3 scripts/msrv.py
	bash scripts/features.sh

# Packages every published crate, builds each from its package, and runs
# the conformance suite on a store written outside the workspace
# (examples/file-store) against the packaged crates.
package:
	bash scripts/package.sh
