# The whole setup on a fresh machine is `make run` (the demo) and `make test`.
GO ?= go
BIN := bin/understudy
# A pipeline fails when any part does (make test pipes go test into testlines).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: build run test bench lint deps faults

build:
	$(GO) build -o $(BIN) ./cmd/understudy

# The demo site: a broker, a main and a backup instance, a Videohub simulator.
run: build
	./$(BIN) demo

# Debian packages the tests use (mosquitto, avahi, dbus, iproute2).
deps:
	bash .ci/deps

# A line per test that takes a second or more, is skipped or fails (with its
# output), and per package: tools/testlines reads go test -json.
test: deps lint
	$(GO) build -o bin/testlines ./tools/testlines
	$(GO) test -race -count=1 -timeout 20m -json ./... | bin/testlines

# The performance figures (README "Performance"): installs mosquitto and rsync
# when missing, measures each figure beside its reference, prints the table and
# writes bench/results.json, bench/results.md and the README's table.
# BENCHFLAGS=-quick checks that it works (fewer trials, nothing written).
bench:
	bash .ci/deps bench
	$(GO) run ./bench $(BENCHFLAGS)

# Seeded fault schedules (docs/faults.md) against the shipped sites, as root:
# SCHEDULES per site (default 200) from seed SEED (default 1), each DURATION
# long (default 60s). Hours on a 2-core machine; not part of make test.
# Reproduce one schedule: make faults SEED=S SCHEDULES=1 (FAULTS_SITES=… for
# one site). Runs with a violation are kept (their folder is printed).
SCHEDULES ?= 200
SEED ?= 1
DURATION ?= 60s
FAULTS_SITES ?= scripts/manager-backup scripts/recorder-standby scripts/vms-pool

faults: build
	@rc=0; for s in $(FAULTS_SITES); do \
		./$(BIN) faults -c $$s/site.yaml --schedules $(SCHEDULES) --seed $(SEED) --duration $(DURATION) || rc=1; \
	done; exit $$rc

# The platforms understudy builds for besides this one (README "Platforms"):
# lint builds the binary and vets every package, tests included, for each.
CROSS := windows/amd64 darwin/arm64 linux/arm64

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@for p in $(CROSS); do \
		echo "GOOS=$${p%/*} GOARCH=$${p#*/} go build ./cmd/understudy && go vet ./..."; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -o /dev/null ./cmd/understudy || exit 1; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./... || exit 1; \
	done
