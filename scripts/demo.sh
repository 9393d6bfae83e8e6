#!/usr/bin/env bash
# demo.sh — run the example shop's tests (examples/shop: users on Postgres,
# ratelimit on Redis, jobs on both; examples/orders on MariaDB and NATS;
# every TestMain is cleanroom.Main) and
# show, per package, how long its services took to become ready and how
# many containers it started versus reused. The full test output is shown
# only when something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
# The CLI, built first: it looks at the engine right after the tests.
cli_dir=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$cli_dir"' EXIT
cli=$cli_dir/cleanroom
go build -o "$cli" ./cmd/cleanroom
# The demo's own run, so that its last look reports what it left and
# nothing that other test processes on the engine hold (under make, a
# sub-run of make's run, so that make's leak check still counts it).
CLEANROOM_RUN_ID="${CLEANROOM_RUN_ID:+$CLEANROOM_RUN_ID/}demo-$(date +%Y%m%d-%H%M%S)-$$"
export CLEANROOM_RUN_ID
echo "Running the example shop's tests against Podman (go test ./examples/shop/... ./examples/orders/...)"
start=$(date +%s%N)
if CLEANROOM_SUMMARY=1 go test -count=1 -v ./examples/shop/... ./examples/orders/... >"$log" 2>&1; then
	tests=$(grep -c -- '--- PASS' "$log" || true)
	grep -E '^cleanroom: ' "$log" | sed 's/^cleanroom: /  /'
	printf '%d tests passed in %s s.\n' "$tests" "$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')"
	# What is left: the suite pod, kept for its grace period so that a
	# next run reuses it, then removed by its reaper; anything no reaper
	# watches is a leak.
	leaked=$("$cli" gc --dry-run --run "$CLEANROOM_RUN_ID")
	pods=$("$cli" ps)
	if grep -q '(reaper ' <<<"$pods"; then
		echo "Left on the engine for a next run to reuse (cleanroom ps):"
		sed 's/^/  /' <<<"$pods"
		echo "Its reaper removes each pod at the time shown under LEASES, once no test process uses it."
		if [ -z "$leaked" ]; then echo "Nothing is left that no reaper watches."; fi
	elif [ -z "$leaked" ]; then
		echo "No cleanroom pod or container is left on the engine."
	fi
	if [ -n "$leaked" ]; then
		echo "Left on the engine with no reaper to remove it (remove with: make clean):"
		echo "$leaked" | sed 's/^/  /'
	fi
else
	cat "$log"
	exit 1
fi
