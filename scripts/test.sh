#!/usr/bin/env bash
# The one test command (`make test`): installs what is missing, then runs
# every test of the workspace against real servers started by the fixtures.
#
# With a Docker engine, servers run in containers (scripts/images.sh builds
# the images, no registry needed) and the suite runs as a version matrix:
#   1. the whole workspace: Redis 7.0 and etcd 3.5 in containers;
#   2. the etcd crate's tests again on etcd 3.4 in containers;
#   3. the Redis crate's tests again on redis-server from PATH.
# Without Docker, pass 1 alone runs, on the binaries from PATH.
# TENURE_REDIS_IMAGE / TENURE_ETCD_IMAGE / TENURE_ETCD_34_IMAGE choose other
# images; TENURE_FIXTURES=path skips containers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

docker_answers() {
  command -v docker >/dev/null 2>&1 && docker version >/dev/null 2>&1
}

containers=0
if [ "${TENURE_FIXTURES:-auto}" != path ] && docker_answers; then
  containers=1
  # Containers (and a cluster's networks) that a killed test process left
  # behind: those whose process is gone, never another run's.
  docker ps -a --filter label=tenure.test.pid \
    --format '{{.ID}} {{.Label "tenure.test.pid"}}' |
    while read -r id pid; do
      kill -0 "$pid" 2>/dev/null || docker rm -f "$id" >/dev/null || true
    done
  docker network ls --format '{{.Name}}' | { grep '^tenure-etcd-net-' || true; } |
    while read -r net; do
      pid=${net#tenure-etcd-net-}; pid=${pid%%-*}
      kill -0 "$pid" 2>/dev/null || docker network rm "$net" >/dev/null 2>&1 || true
    done
  # Local images unless the user named theirs.
  images=$(bash scripts/images.sh) || { echo "test.sh: scripts/images.sh failed" >&2; exit 1; }
  while IFS='=' read -r key value; do
    if [ -z "${!key:-}" ]; then export "$key=$value"; fi
  done <<<"$images"
  echo "test.sh: servers in containers: $TENURE_REDIS_IMAGE, $TENURE_ETCD_IMAGE (and $TENURE_ETCD_34_IMAGE)" >&2
else
  echo "test.sh: no Docker engine (or TENURE_FIXTURES=path): servers from PATH" >&2
fi

failed=0
# tests PACKAGE|all: the workspace is always built whole (all features), so
# the passes share one build.
tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    local filter=()
    [ "$1" = all ] || filter=(-E "package($1)")
    cargo nextest run --workspace --all-features --no-fail-fast "${filter[@]}" || failed=1
  else
    local pkg=(--workspace)
    [ "$1" = all ] || pkg=(-p "$1")
    cargo test --all-features --no-fail-fast "${pkg[@]}" -- --test-threads=2 || failed=1
  fi
}

echo "test.sh: pass 1: the whole workspace" >&2
tests all
if [ "$containers" = 1 ]; then
  echo "test.sh: pass 2: tenure-etcd on ${TENURE_ETCD_34_IMAGE:-}" >&2
  TENURE_ETCD_IMAGE=${TENURE_ETCD_34_IMAGE:-} tests tenure-etcd
  echo "test.sh: pass 3: tenure-redis on redis-server from PATH" >&2
  TENURE_FIXTURES=path tests tenure-redis
fi
# nextest does not run doc tests.
cargo test --workspace --all-features --doc || failed=1
exit $failed
