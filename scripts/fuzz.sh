#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 1m), one
# after another, and stops at the first finding: `go test` then writes the
# failing input under the package's testdata/fuzz/TARGET/ (commit it with the
# fix: it becomes a regression test that `make test` runs). FUZZ=REGEXP picks
# targets by name.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-1m}
FUZZ=${FUZZ:-.}
[ -n "$FUZZ" ] || FUZZ=.

# package directory and target name of each `func FuzzX(f *testing.F)`.
files() { git ls-files '*_test.go' 2>/dev/null || find . -name '*_test.go' | sed 's|^\./||'; }
mapfile -t targets < <(files | xargs grep -H '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' |
	sed -E 's|^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' | sort -u)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
ran=0
for t in "${targets[@]}"; do
	dir=${t% *}
	name=${t#* }
	[[ $name =~ $FUZZ ]] || continue
	echo "== $name (./$dir) for $FUZZTIME, load $(cut -d' ' -f1-3 /proc/loadavg)"
	# -timeout 0: no deadline for the test binary besides -fuzztime.
	$GO test -run '^$' -timeout 0 -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "./$dir"
	ran=$((ran + 1))
done
if [ "$ran" -eq 0 ]; then
	echo "fuzz: no target matches FUZZ=$FUZZ" >&2
	exit 1
fi
echo "fuzz: $ran targets, $FUZZTIME each, no finding"
