#!/usr/bin/env bash
# official-images-test.sh — where a registry is reachable, the snapshot test
# and the example shop against the library's default images, the official
# docker.io/library/postgres and redis (make test runs it; elsewhere the
# local look-alikes stand in for them). Where none is, one line says that
# this part was skipped, and why.
set -euo pipefail
cd "$(dirname "$0")/.."
svc=pkg/cleanroom/service.go
pg=$(sed -n 's/^\s*DefaultPostgresImage\s*=\s*"\(.*\)"/\1/p' "$svc")
rd=$(sed -n 's/^\s*DefaultRedisImage\s*=\s*"\(.*\)"/\1/p' "$svc")
[ -n "$pg" ] && [ -n "$rd" ] || { echo "official-images: cannot read the default images from $svc" >&2; exit 1; }
skip() { echo "official-images: skipped the snapshot test and the example shop on $pg and $rd: $*"; exit 0; }

host=registry-1.docker.io
getent hosts "$host" >/dev/null 2>&1 || skip "$host does not resolve here (no registry is reachable)"
for img in "$pg" "$rd"; do
	if ! out=$(podman pull -q "$img" 2>&1); then
		skip "pulling $img failed: $(tail -n 1 <<<"$out")"
	fi
done
echo "official-images: the snapshot test and the example shop on $pg and $rd"
export CLEANROOM_POSTGRES_IMAGE=$pg CLEANROOM_REDIS_IMAGE=$rd
go test ${TEST_FLAGS:--race -count=1} -run 'TestSnapshot' ./integration/
go test ${TEST_FLAGS:--race -count=1} ./examples/shop/...
