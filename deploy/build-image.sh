#!/usr/bin/env bash
# Builds the wiz image from deploy/Dockerfile on the static binaries in bin/.
# Usage: deploy/build-image.sh [TAG]   (default wiz:dev; WIZ_BIN_DIR: where the binaries are, default bin)
# Needs: bin/wiz and the bundled plugins built with CGO_ENABLED=0 (`make build` does), a Docker Engine,
# and a static busybox (Debian's busybox-static; installed here when missing).
# Pulls nothing: the image is FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-wiz:dev}"
BIN="${WIZ_BIN_DIR:-bin}"
BINS="wiz wiz-executor-kubernetes wiz-executor-local wiz-processors-std"
for b in $BINS; do
  [ -x "$BIN/$b" ] || { echo "build-image: no $BIN/$b; run 'make build' first" >&2; exit 1; }
  if ldd "$BIN/$b" >/dev/null 2>&1; then
    echo "build-image: $BIN/$b is dynamically linked; rebuild with CGO_ENABLED=0 make build" >&2; exit 1
  fi
done
BUSYBOX=/bin/busybox
if ! { [ -x "$BUSYBOX" ] && "$BUSYBOX" --help 2>&1 | head -1 | grep -q BusyBox && ! ldd "$BUSYBOX" >/dev/null 2>&1; }; then
  echo "build-image: installing Debian's busybox-static" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq busybox-static >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq busybox-static >/dev/null; }
fi
ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
cp deploy/Dockerfile "$ctx/Dockerfile"
for b in $BINS; do cp "$BIN/$b" "$ctx/$b"; done
cp "$BUSYBOX" "$ctx/busybox"
old=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$ctx" >/dev/null
new=$(docker image inspect -f '{{.Id}}' "$TAG")
# The image this tag named before is left untagged: remove it (only it), so
# rebuilds do not pile up. One a container still uses stays.
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
echo "$TAG"
