#!/usr/bin/env bash
# The demo: runs the word-count example through the whole architecture —
# wiz → Manager → local executor backend (go-plugin) → `wiz executor` (gRPC) →
# std processor pack (go-plugin) — then lists and shows the run.
# Uses WIZ_HOME when set, else a fresh temporary home.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WIZ_HOME:-}" ]; then
  WIZ_HOME=$(mktemp -d -t wiz-demo-XXXXXX)
  export WIZ_HOME
fi
echo "== wiz home: $WIZ_HOME"
echo "== wiz run examples/word-count/pipeline.yaml --input text=@examples/word-count/input.txt"
./bin/wiz run examples/word-count/pipeline.yaml --input text=@examples/word-count/input.txt --input top=5
echo
echo "== wiz runs list"
./bin/wiz runs list
echo
echo "== wiz runs show last"
./bin/wiz runs show last
echo
echo "== wiz runs output last summary   (std/json over the report, a Wiz File)"
./bin/wiz runs output last summary
