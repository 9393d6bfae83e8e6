#!/usr/bin/env bash
# demo.sh — run the example shop's tests (examples/shop: users on Postgres,
# ratelimit on Redis, jobs on both; every TestMain is cleanroom.Main) and
# show, per package, how long its services took to become ready and how
# many containers it started versus reused. The full test output is shown
# only when something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "Running the example shop's tests against Podman (go test ./examples/shop/...)"
start=$(date +%s%N)
if CLEANROOM_SUMMARY=1 go test -count=1 -v ./examples/shop/... >"$log" 2>&1; then
	tests=$(grep -c -- '--- PASS' "$log" || true)
	grep -E '^cleanroom: ' "$log" | sed 's/^cleanroom: /  /'
	printf '%d tests passed in %s s.\n' "$tests" "$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')"
	left=$(go run ./cmd/cleanroom clean --dry-run)
	if [ -z "$left" ]; then
		echo "No cleanroom pod or container is left on the engine."
	else
		echo "Left on the engine (remove with: make clean):"
		echo "$left"
	fi
else
	cat "$log"
	exit 1
fi
