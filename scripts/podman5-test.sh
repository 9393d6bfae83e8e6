#!/usr/bin/env bash
# podman5-test.sh — the integration suite against Podman 5.4, the engine
# Fedora and RHEL ship (scripts/setup-podman5.sh runs it in a container of
# the host's Podman): all of it rootful with crun, all of it again rootless
# with crun and pasta, and the core scenarios once more rootful with runc.
# Ports are reached at the engine container's address (CLEANROOM_BIND_ADDRESS,
# as a user of a Podman VM sets it). Run as root (make test does).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "podman5-test: run as root" >&2; exit 1; }
flags=${TEST_FLAGS:--race -count=1 -timeout 20m}
scripts/setup-podman5.sh
# A second set-up finds everything in place: quiet and fast.
t0=$(date +%s%N)
out=$(scripts/setup-podman5.sh 2>&1)
ms=$((($(date +%s%N) - t0) / 1000000))
[ -z "$out" ] || { echo "podman5-test: a second set-up still changed things:"; echo "$out"; exit 1; }
[ $ms -le 10000 ] || { echo "podman5-test: a second set-up took $ms ms (limit 10000)"; exit 1; }

on() {
	local kind=$1 vars
	vars=$(scripts/setup-podman5.sh --print "$kind")
	for v in $vars; do export "${v?}"; done
	echo "podman5-test: Podman 5.4 $kind ($CONTAINER_HOST, ports at $CLEANROOM_BIND_ADDRESS): $2"
}

(
	on rootful "the integration suite (crun)"
	# shellcheck disable=SC2086
	go test $flags $(go list ./integration/... | grep -v /integration/faults) ./examples/shop/... ./examples/orders/...
	make -s check-leaks
)
(
	on rootless "the integration suite (crun, pasta)"
	# shellcheck disable=SC2086
	go test $flags $(go list ./integration/... | grep -v /integration/faults) ./examples/shop/... ./examples/orders/...
	make -s check-leaks
)
(
	on runc "the core scenarios (runc)"
	# shellcheck disable=SC2086
	go test $flags ./integration/singleton ./integration/isolation ./examples/shop/...
	# shellcheck disable=SC2086
	go test $flags -run 'TestOneRunSharesOnePod|TestKeepWarmSecondRunCreatesNothing' ./integration/sharing
	make -s check-leaks
)
