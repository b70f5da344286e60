#!/usr/bin/env bash
# Builds and caches the real kube-apiserver and etcd that the Kubernetes executor
# tests run against. Pinned versions, built from the Go module proxy (no prebuilt
# binary can be downloaded here), cached outside the repo; a cached binary that
# reports the pinned version is kept, so a warm run takes a second.
#
# Usage: scripts/k8s-testbin.sh        # prints the directory holding both binaries
# Env:   WIZ_TEST_TOOLS  cache root (default ~/.cache/wiz-test-tools)
#
# Cold: 12-16 minutes on 2 idle cores, about 29 when other builds share them
# (kube-apiserver is most of it; 11.5 min of CPU).
set -euo pipefail

KUBE_VERSION=v1.37.2   # k8s.io/kubernetes; its staging modules are at v0.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.6.16   # go.etcd.io/etcd/server/v3 (Debian's 3.4 breaks kube-apiserver 1.37 watches)

ROOT="${WIZ_TEST_TOOLS:-$HOME/.cache/wiz-test-tools}"
DIR="$ROOT/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$DIR"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

log() { echo "k8s-testbin: $*" >&2; }

# One build at a time, even when several test packages ask at once.
exec 9>"$DIR/.lock"
flock 9

# Read the whole output before matching: grep -q closing the pipe early would
# fail the check under pipefail (SIGPIPE) and rebuild for nothing.
have_etcd() { [ -x "$DIR/etcd" ] && [ "$("$DIR/etcd" --version 2>/dev/null | head -1)" = "etcd Version: ${ETCD_VERSION#v}" ]; }
have_apiserver() { [ -x "$DIR/kube-apiserver" ] && [ "$("$DIR/kube-apiserver" --version 2>/dev/null)" = "Kubernetes $KUBE_VERSION" ]; }

if ! have_etcd; then
  log "building etcd $ETCD_VERSION (about a minute)"
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  cat >"$work/main.go" <<'EOF'
// Command etcd is etcd's own server main, built from the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$work" && go mod init wiz-test-tools/etcd >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 \
    && go build -trimpath -ldflags '-s -w' -o "$DIR/etcd.tmp" .) \
    || { log "etcd build failed (needs the Go module proxy); rerun with 'bash -x $0' to see why"; exit 1; }
  mv "$DIR/etcd.tmp" "$DIR/etcd"
  rm -rf "$work"; trap - EXIT
  have_etcd || { log "built etcd does not report version $ETCD_VERSION"; exit 1; }
fi

if ! have_apiserver; then
  log "building kube-apiserver $KUBE_VERSION (12-30 minutes cold on 2 cores)"
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  cd "$work"
  go mod init wiz-test-tools/kube-apiserver >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging paths that a module download does not have: point each at its release.
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$gomod" ] || { log "cannot download k8s.io/kubernetes@$KUBE_VERSION from the module proxy"; exit 1; }
  go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
  for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p' "$gomod"); do
    case "$m" in k8s.io/sample-*) continue ;; esac
    go mod edit -replace="$m=$m@$STAGING_VERSION"
  done
  cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
  V=k8s.io/component-base/version
  ldflags="-s -w -X $V.gitVersion=$KUBE_VERSION -X $V.gitMajor=1 -X $V.gitMinor=37 -X $V.gitTreeState=clean -X $V.buildDate=1970-01-01T00:00:00Z"
  go build -trimpath -ldflags "$ldflags" -o "$DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver \
    || { log "kube-apiserver build failed (needs the Go module proxy)"; exit 1; }
  mv "$DIR/kube-apiserver.tmp" "$DIR/kube-apiserver"
  cd /; rm -rf "$work"; trap - EXIT
  have_apiserver || { log "built kube-apiserver does not report $KUBE_VERSION"; exit 1; }
fi

echo "$DIR"
