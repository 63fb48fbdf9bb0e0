# Bud — `make run` starts the whole stack, `make test` runs every test.

GO        ?= go
BIN       := $(CURDIR)/bin
SQLC      := $(BIN)/sqlc
# sqlc is pinned; it is built from the Go module proxy on first use.
SQLC_VERSION := v1.31.1
# The linters are pinned and built the same way. workflowcheck v0.6.0 is its
# newest release; it does not import the SDK but reads the workflows' source,
# which it checks as written against SDK v1.50.0.
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
WORKFLOWCHECK := $(BIN)/workflowcheck
WORKFLOWCHECK_VERSION := v0.6.0
# daprd, the Dapr sidecar, is built from the Go module proxy on first use; its
# version is pinned by tools/daprd/go.mod. The first build takes minutes.
DAPRD     := $(BIN)/daprd
DAPR_VERSION := $(shell awk '$$1 == "require" && $$2 == "github.com/dapr/dapr" { print substr($$3, 2) }' tools/daprd/go.mod)
GOTEST_FLAGS ?= -count=1 -timeout 30m
# The web console's sources and the bundle built from them (see `console`).
CONSOLE_SRC  := $(wildcard console/src/*) console/build.mjs console/tsconfig.json console/package.json console/package-lock.json
CONSOLE_DIST := console/dist/app.js

.PHONY: all build run test verify lint generate vet fmt screenshots bench bench-gateway bench-responses bench-evaluate clean

all: build

build: $(CONSOLE_DIST)
	$(GO) build -o $(BIN)/bud ./cmd/bud

# The web console: TypeScript in console/src bundled by esbuild into
# console/dist, which the binary embeds. dist is committed so that a Go build
# needs no Node.js; this rule rebuilds it when a source changed, and verify
# fails when the committed bundle is not what the sources build.
console/node_modules/.bin/esbuild: console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund
	touch $@

$(CONSOLE_DIST): $(CONSOLE_SRC) console/node_modules/.bin/esbuild
	cd console && node_modules/.bin/tsc --noEmit -p . && node build.mjs dist

.PHONY: console console-check
console: $(CONSOLE_DIST)

# Type-checks the console and rebuilds it beside the committed bundle, which
# must be identical.
console-check: console/node_modules/.bin/esbuild
	cd console && node_modules/.bin/tsc --noEmit -p .
	@tmp=$$(mktemp -d) && cd console && node build.mjs $$tmp/dist && \
		if ! diff -r $$tmp/dist dist >/dev/null; then rm -rf $$tmp; echo "console/dist is stale: run make console and commit it"; exit 1; fi; rm -rf $$tmp

# Screenshots of the console's pages for the README, taken by the browser
# test in a real Chromium.
screenshots: build $(DAPRD)
	BUD_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run 'TestConsole' ./cmd/bud

run: build $(DAPRD)
	$(BIN)/bud dev $(ARGS)

# After the tests, the binary just built replays every recorded history in
# workflows/testdata against its own workflow code, as `bud replay` would
# before an upgrade (it exits 1 on any non-deterministic history).
test: verify $(DAPRD) node_modules/.bin/mcp-server-everything build
	$(GO) test $(GOTEST_FLAGS) ./...
	$(BIN)/bud replay workflows/testdata/*.json

# A real MCP server for connection's end-to-end test, pinned by package-lock.json.
node_modules/.bin/mcp-server-everything: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(SQLC):
	GOBIN=$(BIN) $(GO) install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(WORKFLOWCHECK):
	GOBIN=$(BIN) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

.PHONY: daprd
daprd: $(DAPRD)

# CGO off and -s -w as dapr's release builds; stablecomponents registers the
# stable components (daprd panics at start without a components tag).
$(DAPRD): tools/daprd/go.mod tools/daprd/go.sum tools/daprd/main.go
	cd tools/daprd && CGO_ENABLED=0 $(GO) build -trimpath -tags stablecomponents \
		-ldflags '-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$(DAPR_VERSION) -X github.com/dapr/kit/logger.DaprVersion=$(DAPR_VERSION)' \
		-o $(DAPRD) .

generate: $(SQLC)
	$(SQLC) generate

# lint fails on any staticcheck finding, or on a workflow that reaches
# non-deterministic code (workflowcheck; its config says what it misreads).
lint: $(STATICCHECK) $(WORKFLOWCHECK)
	$(STATICCHECK) ./...
	$(WORKFLOWCHECK) -config workflowcheck.config.yaml ./workflows/...

# verify fails when generated code is stale, go.mod is untidy, code is not
# gofmt'ed, go vet complains, or lint does.
verify: $(SQLC) lint console-check
	$(SQLC) diff
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(find . -name '*.go' -not -path './bin/*')

bench: bench-gateway bench-responses
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The gateway's added latency against the upstream stand-in, open loop.
# BENCH_FLAGS e.g. -rates 500,1000,2000 -duration 10s
bench-gateway: build
	$(GO) run ./cmd/budbench -bud $(BIN)/bud -duration 20s $(BENCH_FLAGS)

# What a single-call prompt run through /v1/responses adds over the model,
# on bud dev's embedded defaults, sequentially and with 50 concurrent callers;
# then, alternately on fresh bud devs, the same code built without the first
# model call's fast path (-tags nofirstturn), to show what that path earns.
bench-responses: build $(DAPRD)
	$(GO) build -tags nofirstturn -o $(BIN)/bud-nofirstturn ./cmd/bud
	$(GO) run ./cmd/budbench responses -bud $(BIN)/bud -compare $(BIN)/bud-nofirstturn -duration 20s $(BENCH_FLAGS)

# An evaluation of 1,000 rows x 2 candidates on bud dev with the stand-in:
# runs/s, and bud's memory before, at its peak and after, over two rounds.
bench-evaluate: build $(DAPRD)
	$(GO) run ./cmd/budbench evaluate -bud $(BIN)/bud $(BENCH_FLAGS)

clean:
	rm -rf $(BIN) .bud
