#!/usr/bin/env bash
# check-build.sh — the guard DESIGN.md asks for: the module builds with
# CGO_ENABLED=0 and no build tags, and nothing in it (tests included)
# depends on gpgme or btrfs, which the typed Podman binding packages and
# pkg/specgen would pull in. The library and the CLI build for macOS and
# Windows too.
set -euo pipefail
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go build ./... || {
	echo "check-build: 'CGO_ENABLED=0 go build ./...' (no tags) fails" >&2
	exit 1
}
# Users run tests on macOS and Windows too, against a podman machine.
for os in darwin windows; do
	CGO_ENABLED=0 GOOS=$os go build ./pkg/... ./cmd/... || {
		echo "check-build: the library or the CLI does not build for GOOS=$os" >&2
		exit 1
	}
done
bad=$(CGO_ENABLED=0 go list -deps -test ./... | grep -E 'gpgme|btrfs|podman/v5/pkg/specgen|podman/v5/pkg/bindings/' || true)
if [ -n "$bad" ]; then
	echo "check-build: forbidden packages in the dependency graph (use pkg/podman instead):" >&2
	echo "$bad" >&2
	exit 1
fi
