#!/usr/bin/env bash
# What the README tells a newcomer to run first, checked as CI runs it on a
# clean checkout before anything else is installed or built:
#   make demo                  an election, a crash fail-over, a hand-off;
#   cargo run --example memory one leader, then another after its release.
# Each must build on its own (no other workspace member lending features)
# and print what the README promises.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp)
trap 'rm -f "$out"' EXIT

expect() { # FILE PATTERN WHAT
  grep -Eq "$2" "$1" || {
    echo "newcomer.sh: $3 missing from the output:" >&2
    sed 's/^/  | /' "$1" >&2
    exit 1
  }
}

echo "newcomer.sh: make demo" >&2
make demo 2>&1 | tee "$out"
# Each line reads `tenure [TIME] MESSAGE`.
expect "$out" '\] 1\. election: [a-z]+ won in' "the election"
expect "$out" '\] 2\. crash: [a-z]+ dies without releasing' "the crash"
expect "$out" '\]    fail-over: [a-z]+ leads after' "the crash fail-over"
expect "$out" '\]    hand-off: [a-z]+ leads .* after [a-z]+ was told to stop' "the graceful hand-off"
expect "$out" '\] done in ' "the demo's end"

echo "newcomer.sh: cargo run --example memory" >&2
cargo run -q --example memory 2>&1 | tee "$out"
[ "$(grep -Ec '^[abc] leads, fencing token [0-9]+$' "$out")" -ge 2 ] || {
  echo "newcomer.sh: the memory example did not show two leaders in turn:" >&2
  sed 's/^/  | /' "$out" >&2
  exit 1
}
expect "$out" '^[abc] stops leading$' "a leader stepping down"
echo "newcomer.sh: ok" >&2
