# Cleanroom — every target sets up what it needs, idempotently.
#   make demo   run the example shop's tests: 3 packages on a shared Postgres
#               and Redis, its order service on MariaDB and NATS, with
#               per-package start-up times and reuse counts
#   make test   everything CI runs: setup, images, registry, gofmt, vet, build
#               guard, unit and integration tests with -race, leak check, and
#               (as root) the integration suite again rootless, over ssh, and
#               on Podman 5.4 rootful and rootless

SHELL := /bin/bash
GO ?= go
# The local images built by scripts/build-images.sh; point these at other
# images (e.g. docker.io/library/postgres:15) where a registry is reachable.
export CLEANROOM_POSTGRES_IMAGE ?= localhost/cleanroom/postgres:15
export CLEANROOM_REDIS_IMAGE ?= localhost/cleanroom/redis:7
export CLEANROOM_MARIADB_IMAGE ?= localhost/cleanroom/mariadb:10.11
export CLEANROOM_NATS_IMAGE ?= localhost/cleanroom/nats:2
export CLEANROOM_RABBITMQ_IMAGE ?= localhost/cleanroom/rabbitmq:3

# One run ID for every test process a make invocation starts (all its go
# test commands): they label what they make with it, and check-leaks looks
# only at this run's objects, never at another project's or a kept-warm pod.
ifndef CLEANROOM_RUN_ID
CLEANROOM_RUN_ID := make-$(shell date +%Y%m%d-%H%M%S)-$(shell od -An -N4 -tx4 /dev/urandom | tr -d ' ')
endif
export CLEANROOM_RUN_ID

# Unit tests need no Podman; integration/ and the example shop's tests do.
UNIT_PKGS = $$($(GO) list ./... | grep -v -e /integration -e /examples/shop)
# The fault suite (integration/faults) runs on its own: one of its scenarios
# restarts the engine's API service.
INTEGRATION_PKGS = $$($(GO) list ./integration/... | grep -v /integration/faults) ./examples/shop/... ./examples/orders/...
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: help setup images setup-again registry test test-steps demo bench bench-compare bench-services clean fmt-check vet build-guard unit integration check-leaks rootless remote podman5 official-images faults go124 postgres-versions

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install, configure and start Podman (idempotent, quiet when done)
	@scripts/setup-podman.sh

images: setup ## build the local service images (postgres, redis, mariadb, nats, rabbitmq) if their recipe changed
	@scripts/build-images.sh

demo: images ## run the example shop's tests; per package: start-up time, containers started vs reused
	@scripts/demo.sh

bench: images ## the benchmarks: warm attach (cached, probed), cold start, per-test isolation, keep-warm attach
	$(GO) test -run '^$$' -bench AttachWarm -benchtime 2000x ./integration/
	$(GO) test -run '^$$' -bench ColdStart -benchtime 5x ./integration/
	$(GO) test -run '^$$' -bench Isolation -benchtime 200x ./integration/isolation/
	$(GO) test -run '^$$' -bench MariaDBIsolation -benchtime 200x ./integration/mariadb/
	$(GO) test -run '^$$' -bench NATSIsolation -benchtime 200x ./integration/nats/
	$(GO) test -run '^$$' -bench RabbitMQIsolation -benchtime 50x ./integration/rabbitmq/
	$(GO) test -run '^$$' -bench KeepWarm -benchtime 50x ./integration/sharing/

# One make test at a time per user and machine: two runs share the engine,
# and each one's leak check would count the other's pods in use.
test: ## all checks and tests, as CI runs them
	@scripts/one-at-a-time.sh /tmp/cleanroom-make-test-$$(id -u).lock $(MAKE) --no-print-directory test-steps

test-steps: images setup-again fmt-check vet build-guard unit go124 integration faults official-images postgres-versions check-leaks rootless remote podman5
	@echo "make test: all green"

# Run right after a set-up: a second one must find everything in place,
# print nothing and take well under the 10 s the foundation issue allows.
setup-again: images
	@t0=$$(date +%s%N); out=$$(scripts/setup-podman.sh 2>&1 && scripts/build-images.sh 2>&1) || { echo "$$out"; exit 1; }; \
	ms=$$(( ($$(date +%s%N) - t0) / 1000000 )); \
	if [ -n "$$out" ]; then echo "setup-again: a second set-up still changed things:"; echo "$$out"; exit 1; fi; \
	if [ $$ms -gt 10000 ]; then echo "setup-again: a second set-up took $$ms ms (limit 10000)"; exit 1; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	@$(GO) vet ./...
	@cd bench && $(GO) vet ./...

build-guard: ## CGO_ENABLED=0 build without tags; no gpgme or btrfs in the dependencies
	@scripts/check-build.sh

unit:
	$(GO) test $(TEST_FLAGS) $(UNIT_PKGS)

# Users on Go 1.24 (RHEL and Fedora ship it) can import the library: the
# unit tests once more with that toolchain, from the Go module proxy.
GO124 ?= go1.24.11
go124: ## the unit tests again with Go 1.24 (the oldest Go the module supports)
	GOTOOLCHAIN=$(GO124) $(GO) test -count=1 ./pkg/... ./internal/...

integration: images registry
	$(GO) test $(TEST_FLAGS) $(INTEGRATION_PKGS)

registry: images ## a local distribution registry on 127.0.0.1:5000 holding the local images (for the pull tests)
	@if [ "$$(id -u)" = 0 ]; then scripts/setup-registry.sh; \
	elif ! curl -s -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/; then sudo scripts/setup-registry.sh; fi

# As root, the integration suite runs a second time as ROOTLESS_USER on that
# user's rootless Podman; as any other user, make test is rootless already.
ROOTLESS_USER ?= cleanroom-rl
rootless: ## the integration suite again, as an unprivileged user on rootless Podman (when run as root)
	@if [ "$$(id -u)" = 0 ]; then scripts/rootless-test.sh $(ROOTLESS_USER); fi

bench-compare: images ## the side-by-side benchmark (per-test containers, testcontainers-go, Cleanroom); writes BENCHMARKS.md
	cd bench && $(GO) run ./cmd/compare -o ../BENCHMARKS.md

bench-services: images ## each service's cold and snapshot start and per-test isolation costs; writes their section of BENCHMARKS.md
	cd bench && $(GO) run ./cmd/services -o ../BENCHMARKS.md

remote: ## the core scenarios against a Podman reached over ssh (sshd on 198.51.100.7:2222, an address on the loopback device; when run as root)
	@if [ "$$(id -u)" = 0 ]; then scripts/remote-test.sh $(ROOTLESS_USER); fi

faults: images registry ## the fault suite: engine restart, killed containers and processes, removed pods, crowds, done contexts, bad lease directories, keep-warm then gc
	$(GO) test $(TEST_FLAGS) -parallel 3 ./integration/faults/

# The isolation and snapshot tests on the other PostgreSQL versions: 17 (Debian
# trixie) and 13 (bullseye, the oldest Debian still serves; no CREATE
# DATABASE … STRATEGY there). The host run above covers 15.
postgres-versions: images ## the isolation and snapshot tests on PostgreSQL 13 and 17 (local images from Debian bullseye and trixie)
	@scripts/build-images.sh postgres13 postgres17
	CLEANROOM_POSTGRES_IMAGE=localhost/cleanroom/postgres:17 $(GO) test $(TEST_FLAGS) ./integration/isolation/
	CLEANROOM_POSTGRES_IMAGE=localhost/cleanroom/postgres:17 $(GO) test $(TEST_FLAGS) -run 'TestSnapshot' ./integration/
	CLEANROOM_POSTGRES_IMAGE=localhost/cleanroom/postgres:13 $(GO) test $(TEST_FLAGS) ./integration/isolation/

official-images: images ## where a registry is reachable, the snapshot test and the example shop on the official postgres and redis images; else says it skipped them
	@TEST_FLAGS="$(TEST_FLAGS)" scripts/official-images-test.sh

podman5: images registry ## the integration suite on Podman 5.4 (crun, netavark): rootful, rootless (pasta), core scenarios with runc (as root)
	@if [ "$$(id -u)" = 0 ]; then TEST_FLAGS="$(TEST_FLAGS)" scripts/podman5-test.sh; fi

# The snapshot images this run's tests built go too: the tests name their
# suites afresh each run, so nothing would use them again, and each holds
# the image's size again (37 GB after a day of runs on a dev machine).
check-leaks: ## fail if a cleanroom pod or container this run made is left (after the reapers' grace period); remove the run's snapshot images
	@$(GO) build -o bin/cleanroom ./cmd/cleanroom; \
	[ -n "$$CLEANROOM_RUN_ID" ] || { echo "check-leaks: CLEANROOM_RUN_ID is empty"; exit 2; }; \
	for i in $$(seq 1 40); do left=$$(bin/cleanroom clean --dry-run --run "$$CLEANROOM_RUN_ID"); [ -z "$$left" ] && break; sleep 0.5; done; \
	bin/cleanroom gc --snapshots --run "$$CLEANROOM_RUN_ID" >/dev/null || echo "check-leaks: could not remove the snapshot images of run $$CLEANROOM_RUN_ID"; \
	[ -z "$$left" ] && exit 0; \
	echo "leaked by the tests of run $$CLEANROOM_RUN_ID (now removed):"; echo "$$left"; bin/cleanroom clean --run "$$CLEANROOM_RUN_ID" >/dev/null; exit 1

clean: ## remove every pod and container labelled io.cleanroom.managed, nothing else
	@$(GO) run ./cmd/cleanroom clean $(CLEAN_FLAGS)
