#!/usr/bin/env bash
# The one test command (`make test`): installs what is missing, then runs
# every test of the workspace against real servers started by the fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast -- --test-threads=2
fi
# nextest does not run doc tests.
cargo test --workspace --all-features --doc
