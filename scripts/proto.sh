#!/usr/bin/env bash
# Regenerates the Go code in proto/ with pinned tools, installing them when missing.
# Usage: scripts/proto.sh [OUTDIR]   (OUTDIR defaults to the repo root; the drift
# check generates into a temp dir and compares).
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.5.1
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"
if ! command -v protoc >/dev/null 2>&1; then
  echo "proto: installing protoc from Debian's protobuf-compiler" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  # Wait for the package lock (another install, unattended upgrades) instead
  # of failing at once.
  APT="apt-get -o DPkg::Lock::Timeout=600"
  $SUDO $APT update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive $APT install -y -qq protobuf-compiler >/dev/null
fi
want() { [ -x "$TOOLS/$1" ] && [ "$(cat "$TOOLS/$1.version" 2>/dev/null)" = "$2" ]; }
if ! want protoc-gen-go $PROTOC_GEN_GO; then
  GOBIN="$TOOLS" GOFLAGS= go install google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO
  echo $PROTOC_GEN_GO > "$TOOLS/protoc-gen-go.version"
fi
if ! want protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC; then
  GOBIN="$TOOLS" GOFLAGS= go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC
  echo $PROTOC_GEN_GO_GRPC > "$TOOLS/protoc-gen-go-grpc.version"
fi
OUT="${1:-$PWD}"
MOD=github.com/wiz-run/wiz
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
PATH="$TOOLS:$PATH" protoc -I proto \
  --go_out="$tmp" --go_opt=module=$MOD \
  --go-grpc_out="$tmp" --go-grpc_opt=module=$MOD \
  $(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
mkdir -p "$OUT/proto"
for d in wizpb wizrpc; do
  rm -f "$OUT/proto/$d"/*.pb.go
  mkdir -p "$OUT/proto/$d"
  cp "$tmp/proto/$d"/*.pb.go "$OUT/proto/$d/"
done
