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
  # Containers a killed run left behind.
  leftovers=$(docker ps -aq --filter label=tenure.test)
  [ -z "$leftovers" ] || docker rm -f $leftovers >/dev/null
  docker network ls --format '{{.Name}}' | { grep '^tenure-etcd-net-' || true; } |
    xargs -r docker network rm >/dev/null
  # Local images unless the user named theirs.
  while IFS='=' read -r key value; do
    if [ -z "${!key:-}" ]; then export "$key=$value"; fi
  done < <(bash scripts/images.sh)
  echo "test.sh: servers in containers: $TENURE_REDIS_IMAGE, $TENURE_ETCD_IMAGE (and $TENURE_ETCD_34_IMAGE)" >&2
else
  echo "test.sh: no Docker engine (or TENURE_FIXTURES=path): servers from PATH" >&2
fi

failed=0
tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --all-features --no-fail-fast "$@" || failed=1
  else
    cargo test --all-features --no-fail-fast "$@" -- --test-threads=2 || failed=1
  fi
}

echo "test.sh: pass 1: the whole workspace" >&2
tests --workspace
if [ "$containers" = 1 ]; then
  echo "test.sh: pass 2: tenure-etcd on $TENURE_ETCD_34_IMAGE" >&2
  TENURE_ETCD_IMAGE=$TENURE_ETCD_34_IMAGE tests -p tenure-etcd
  echo "test.sh: pass 3: tenure-redis on redis-server from PATH" >&2
  TENURE_FIXTURES=path tests -p tenure-redis
fi
# nextest does not run doc tests.
cargo test --workspace --all-features --doc || failed=1
exit $failed
