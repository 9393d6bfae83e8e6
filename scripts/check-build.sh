#!/usr/bin/env bash
# check-build.sh — the guard DESIGN.md asks for: the module builds with
# CGO_ENABLED=0 and no build tags, and nothing in it (tests included)
# depends on gpgme or btrfs, which the typed Podman binding packages and
# pkg/specgen would pull in.
set -euo pipefail
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go build ./... || {
	echo "check-build: 'CGO_ENABLED=0 go build ./...' (no tags) fails" >&2
	exit 1
}
bad=$(CGO_ENABLED=0 go list -deps -test ./... | grep -E 'gpgme|btrfs|podman/v5/pkg/specgen|podman/v5/pkg/bindings/' || true)
if [ -n "$bad" ]; then
	echo "check-build: forbidden packages in the dependency graph (use pkg/podman instead):" >&2
	echo "$bad" >&2
	exit 1
fi
