# The whole setup on a fresh machine is `make run` (the demo) and `make test`.
GO ?= go
BIN := bin/understudy
# A pipeline fails when any part does (make test pipes go test into testlines).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: build run test bench lint deps faults

build:
	$(GO) build -o $(BIN) ./cmd/understudy

# The demo site: a main, a backup and a witness electing the coordinator, each
# embedding a broker, and a Videohub simulator.
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
# SCHEDULES in all (default 200, shared evenly among the shipped sites: 67
# each) from seed SEED (default 1) on each site, each DURATION long
# (default 60s) and then quiet until what came back is failed back. The
# sites run at the same time, FAULTS_PARALLEL schedules each (default 2):
# a schedule's instances are mostly idle (about a tenth of a core), so six
# at once leave this 2-core machine half idle. About an hour; not part of
# make test. Each line of output starts with its site. FAULTS_SITES=… runs
# some sites only (their share each).
# Reproduce one schedule: make faults SEED=S SCHEDULES=1 FAULTS_SITES=…
# Runs with a violation are kept (their folder is printed). The recorder
# and VMS sites run with their failover delay (VMS: 10 minutes), failback
# delay and copy settle shortened, so that a minute sees delayed failovers
# and failbacks with copies, and aim at copies too; the manager site aims
# at configuration pushes too (its failback delay shortened to 8s). A whole
# run (the default SCHEDULES, of every site or some: one site alone is a
# whole run of that site) writes each site's report to faults/results/ and
# the table of every site's last report to faults/results.md and the
# README (tools/faultstable), with the date and commit each ran on (the
# binary is built with its VCS stamp for that).
SCHEDULES ?= 200
SEED ?= 1
DURATION ?= 60s
FAULTS_PARALLEL ?= 2
ALL_FAULT_SITES := scripts/manager-backup scripts/recorder-standby scripts/vms-pool
FAULTS_SITES ?= $(ALL_FAULT_SITES)
WHOLE_FAULTS_RUN := $(filter 200,$(SCHEDULES))

faults:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/understudy
	@n=$(words $(ALL_FAULT_SITES)); per=$$(( ($(SCHEDULES) + n - 1) / n )); pids=""; for s in $(FAULTS_SITES); do \
		case $$s in \
			*recorder-standby) timing="--failback-delay 5s --copy-settle 3s --aim takeover,failback,copy";; \
			*vms-pool) timing="--failover-delay 4s --failback-delay 8s --copy-settle 3s --aim takeover,failback,copy";; \
			*) timing="--failback-delay 8s --aim takeover,failback,config";; esac; \
		results=""; if [ -n "$(WHOLE_FAULTS_RUN)" ]; then mkdir -p faults/results; results="--results faults/results/$${s##*/}.json"; fi; \
		( ./$(BIN) faults -c $$s/site.yaml --schedules $$per --seed $(SEED) --duration $(DURATION) --parallel $(FAULTS_PARALLEL) $$timing $$results 2>&1 | sed -u "s|^|$${s##*/}: |" ) & pids="$$pids $$!"; \
	done; \
	rc=0; for p in $$pids; do wait $$p || rc=1; done; \
	if [ -n "$(WHOLE_FAULTS_RUN)" ]; then $(GO) run ./tools/faultstable -out faults/results.md -readme README.md faults/results/*.json || rc=1; fi; \
	exit $$rc

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
