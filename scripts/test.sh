#!/usr/bin/env bash
# The one test command (`make test`): installs what is missing, then runs
# every test of the workspace against real servers started by the fixtures.
#
# With a Docker engine, servers run in containers (scripts/images.sh builds
# the images, no registry needed) and the suite runs as a version matrix:
#   1. the whole workspace: Redis 7.0 and etcd 3.5 in containers;
#   2. the etcd crate's tests again on etcd 3.4, then on etcd 3.6 (built
#      from the Go module proxy), in containers;
#   3. the Redis crate's tests again on redis-server from PATH, then on
#      Valkey 8.1 in a container (its TLS test skipped: that build has no TLS);
#   4. the Kubernetes crate's tests on a real kube-apiserver (any machine
#      with Go; see below).
# Without Docker, passes 1 and 4 run, on the binaries from PATH.
# TENURE_REDIS_IMAGE / TENURE_ETCD_IMAGE / TENURE_ETCD_34_IMAGE /
# TENURE_ETCD_36_IMAGE / TENURE_VALKEY_IMAGE choose other images;
# TENURE_FIXTURES=path skips containers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# The Go parts, built once and cached (a cold build takes minutes; a cached
# one, a second): kube-apiserver (pass 4, and the chaos quick mix of pass 1)
# and the Go electors that the Kubernetes tests run as peers. They build in
# the background while cargo builds the workspace's tests (below): on a
# fresh machine the two builds overlap instead of queueing.
go_out=$(mktemp -d)
(
  bash scripts/kube-apiserver.sh >"$go_out/apiserver" &&
    bash scripts/go-binary.sh electors >"$go_out/electors"
  echo $? >"$go_out/rc"
) &
go_builds=$!

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
# tests PACKAGE|all [ignored]: the workspace is always built whole (all
# features), so the passes share one build. With `ignored`, the ignored
# tests run too (tenure-k8s's least-privilege tests, which need a real
# server's RBAC). SKIP_TEST=NAME leaves out the tests whose name has NAME;
# ONLY_TEST=NAME runs only those whose name has NAME.
tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    local filter=() ignored=() expr
    if [ "$1" != all ]; then
      expr="package($1)"
      [ -n "${SKIP_TEST:-}" ] && expr="$expr and not test($SKIP_TEST)"
      [ -n "${ONLY_TEST:-}" ] && expr="$expr and test($ONLY_TEST)"
      filter=(-E "$expr")
    fi
    [ "${2:-}" = ignored ] && ignored=(--run-ignored all)
    cargo nextest run --workspace --all-features --no-fail-fast "${filter[@]}" "${ignored[@]}" || failed=1
  else
    local pkg=(--workspace) ignored=() skip=()
    [ "$1" = all ] || pkg=(-p "$1")
    [ "${2:-}" = ignored ] && ignored=(--include-ignored)
    [ -n "${SKIP_TEST:-}" ] && skip=(--skip "$SKIP_TEST")
    [ -n "${ONLY_TEST:-}" ] && skip+=("$ONLY_TEST")
    cargo test --all-features --no-fail-fast "${pkg[@]}" -- --test-threads=2 "${ignored[@]}" "${skip[@]}" || failed=1
  fi
}

# The tests' build, beside the Go builds; then wait for those.
cargo test --workspace --all-features --no-run -q 2>&1 | grep -v '^ *Executable ' >&2 || true
wait "$go_builds" || true
if [ "$(cat "$go_out/rc" 2>/dev/null)" != 0 ]; then
  echo "test.sh: building kube-apiserver or the Go electors failed (their output is above)" >&2
  exit 1
fi
kube_apiserver=$(cat "$go_out/apiserver")
TENURE_GO_ELECTORS=$(cat "$go_out/electors")
export TENURE_KUBE_APISERVER=${TENURE_KUBE_APISERVER:-$kube_apiserver} TENURE_GO_ELECTORS

echo "test.sh: pass 1: the whole workspace" >&2
tests all
if [ "$containers" = 1 ]; then
  echo "test.sh: pass 2: tenure-etcd on ${TENURE_ETCD_34_IMAGE:-}" >&2
  TENURE_ETCD_IMAGE=${TENURE_ETCD_34_IMAGE:-} tests tenure-etcd
  echo "test.sh: pass 2b: tenure-etcd on ${TENURE_ETCD_36_IMAGE:-}" >&2
  TENURE_ETCD_IMAGE=${TENURE_ETCD_36_IMAGE:-} tests tenure-etcd
  echo "test.sh: pass 3: tenure-redis on redis-server from PATH" >&2
  TENURE_FIXTURES=path tests tenure-redis
  echo "test.sh: pass 3b: tenure-redis on ${TENURE_VALKEY_IMAGE:-} (no TLS in that build: its TLS test is left out)" >&2
  TENURE_REDIS_IMAGE=${TENURE_VALKEY_IMAGE:-} SKIP_TEST=tls_with_a_generated_certificate tests tenure-redis
fi
# Pass 4: tenure-k8s on a real kube-apiserver (built from k8s.io/kubernetes
# through the Go module proxy, cached by version; scripts/kube-apiserver-up.sh)
# on etcd from PATH: the conformance suite, the MultiLock tests, the Go
# electors (client-go, Istio) as peers, and least privilege (rbac.yaml).
# The lock, wire and hand-off tests stay on the in-repo fixture there too.
echo "test.sh: pass 4: tenure-k8s on a real kube-apiserver" >&2
kube_dir=$(mktemp -d)
if kube_env=$(bash scripts/kube-apiserver-up.sh "$kube_dir"); then
  while IFS='=' read -r key value; do export "$key=$value"; done <<<"$kube_env"
  # Ignored tests run here (least privilege, the restart on a server of
  # its own), except the measurements (tests/go_bench.rs, `measure_*`,
  # run by hand for BENCHMARKS.md).
  TENURE_K8S_REAL=1 SKIP_TEST=measure_ tests tenure-k8s ignored
  # deploy/example.yaml, applied and run as its ServiceAccount.
  TENURE_K8S_REAL=1 ONLY_TEST=the_example_deployment tests tenure-cli ignored
  # shellcheck disable=SC2086
  kill $TENURE_KUBE_PIDS 2>/dev/null || true
  unset KUBECONFIG TENURE_K8S_TENURE_KUBECONFIG TENURE_KUBE_PIDS
else
  echo "test.sh: the real kube-apiserver did not start (log in $kube_dir)" >&2
  failed=1
fi

# nextest does not run doc tests.
cargo test --workspace --all-features --doc || failed=1
exit $failed
