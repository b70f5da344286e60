#!/usr/bin/env bash
# Fails when proto/'s committed generated code is stale: regenerates into a
# temp dir with the pinned tools and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
scripts/proto.sh "$tmp"
for d in wizpb wizrpc; do
  for f in "$tmp/proto/$d"/*.pb.go; do
    if ! cmp -s "$f" "proto/$d/$(basename "$f")"; then
      echo "proto: proto/$d/$(basename "$f") is stale; run 'make proto' and commit the result" >&2
      exit 1
    fi
  done
  for f in proto/$d/*.pb.go; do
    [ -e "$tmp/proto/$d/$(basename "$f")" ] || { echo "proto: $f has no .proto source; remove it" >&2; exit 1; }
  done
done
echo "proto: generated code is up to date"
