#!/usr/bin/env bash
# Builds a tenure image without a registry, through the local-image path
# the test servers use (scripts/images.sh): a root filesystem holding the
# binary, stripped, and the shared libraries `ldd` names, the user nonroot
# (65532) and tenure as the entrypoint, imported with `docker import`
# (nothing pulled). It is the Dockerfile's final stage made from this
# machine's libraries, for the tests; users build the Dockerfile.
#
#   scripts/image.sh [BINARY [TAG [EXTRA...]]]
#
# BINARY: default target/release/tenure. TAG: default tenure:local.
# EXTRA: more programs put in /bin with their libraries (the image test
# adds sh and sleep, for deploy/example.yaml's job). Prints TAG SIZE_BYTES.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/tenure}
tag=${2:-tenure:local}
shift $(($# < 2 ? $# : 2))
[ -x "$binary" ] || { echo "image.sh: no $binary (cargo build --release -p tenure-cli)" >&2; exit 1; }
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
  echo "image.sh: no Docker engine answers (scripts/install-deps.sh starts one)" >&2
  exit 1
}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
# copy_libs BIN: every library BIN loads, and the loader, at their paths.
copy_libs() {
  { ldd "$1" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
    [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
cp "$binary" "$root/usr/local/bin/tenure"
strip "$root/usr/local/bin/tenure" 2>/dev/null || true
copy_libs "$binary"
for extra in "$@"; do
  path=$(command -v "$extra")
  cp -L "$path" "$root/bin/$(basename "$extra")"
  copy_libs "$path"
done
# The users distroless images have: root, and nonroot 65532.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
# CA certificates, for stores behind TLS with public certificates.
if [ -e /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
tar -C "$root" --owner=0 --group=0 -c . | docker import \
  --change 'USER 65532:65532' \
  --change 'ENV PATH=/usr/local/bin:/bin' \
  --change 'EXPOSE 8080' \
  --change 'ENTRYPOINT ["/usr/local/bin/tenure"]' \
  - "$tag" >/dev/null
echo "$tag $(docker image inspect --format '{{.Size}}' "$tag")"
