# wiz — build, demo, test. Every target installs what it needs itself.
GO       ?= go
VERSION  ?= 0.1.0
BIN      := bin
LDFLAGS  := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build demo test test-short fuzz proto proto-check bench bench-data bench-daemon bench-schedules bench-hops clean k8s-testbin image

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/wiz ./cmd/wiz
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/wiz-executor-local ./plugins/executors/local
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/wiz-executor-kubernetes ./plugins/executors/kubernetes
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/wiz-processors-std ./plugins/processors/std

# The demo: the example pipeline, end to end through the real plugins.
demo: build
	./examples/demo.sh

proto:
	scripts/proto.sh

# Fails when the committed generated code differs from what `make proto` makes.
proto-check:
	scripts/proto-check.sh

# The real kube-apiserver and etcd that the Kubernetes executor's tests run
# against: built from the Go module proxy once (12-30 min on 2 cores), then
# cached in ~/.cache/wiz-test-tools (WIZ_TEST_TOOLS) and reused in a second.
k8s-testbin:
	scripts/k8s-testbin.sh >/dev/null

# The wiz image (deploy/Dockerfile) on the static binaries in bin/.
image: build
	deploy/build-image.sh wiz:$(VERSION)

test: build proto-check k8s-testbin
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) test -count=1 ./...

test-short:
	$(GO) test -short ./...

# Every Go fuzz target (pipeline files, sizes, ages, expressions, templates,
# script quoting, cron specs, the Manager API's requests) for FUZZTIME each;
# FUZZ=REGEXP picks targets. `make test` runs their seed corpora.
FUZZTIME ?= 1m
fuzz:
	FUZZTIME=$(FUZZTIME) FUZZ='$(FUZZ)' GO=$(GO) scripts/fuzz.sh

# Side-by-side benchmark: wiz against make and ninja on the same DAGs, plus
# the kernel benchmarks. BENCHFLAGS=--quick for a small version.
bench: build
	$(GO) run ./bench $(BENCHFLAGS)
	$(MAKE) bench-data

# Data plane: MB/s of a 1 GiB file through N std/exec cat processors next to
# plain cat piping (BENCHFLAGS=--quick: 256 MiB, one repetition; more flags
# in DATABENCHFLAGS, e.g. --chain 5).
bench-data: build
	$(GO) run ./bench/dataplane $(if $(findstring --quick,$(BENCHFLAGS)),--quick) $(DATABENCHFLAGS)

# One section alone: 50 clients starting runs on one `wiz daemon`; the
# per-hop overhead breakdown (focused Go benchmarks).
bench-daemon: build
	$(GO) run ./bench --only daemon $(BENCHFLAGS)

bench-schedules: build
	$(GO) run ./bench --only schedules $(BENCHFLAGS)

bench-hops: build
	$(GO) run ./bench --only hops $(BENCHFLAGS)

clean:
	rm -rf $(BIN)
