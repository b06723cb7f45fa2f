.PHONY: test lint demo

# Three candidates in one process; needs nothing but Rust.
demo:
	cargo run -q -p tenure-cli --no-default-features -- demo

# Installs redis-server, etcd and protoc when missing, then runs every test.
test:
	bash scripts/test.sh

# Formatting and lints, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	python3 scripts/msrv.py
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features --exclude tenure-cli
