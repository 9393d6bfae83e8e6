#!/usr/bin/env bash
# remote-test.sh USER — the integration suite's core scenarios against a
# "remote" Podman: USER's rootless service behind an sshd on
# 198.51.100.7:2222 (scripts/setup-remote.sh), reached as
# CONTAINER_HOST=ssh://… with a key and services published on that address
# (CLEANROOM_BIND_ADDRESS), the way a suite uses a bigger Podman host. Run as
# root (make test does).
set -euo pipefail
u=${1:?usage: $0 USER}
cd "$(dirname "$0")/.."
vars=$(scripts/setup-remote.sh "$u" --print)
for v in $vars; do export "${v?}"; done
echo "remote-test: core scenarios over $CONTAINER_HOST"
# The engine is remote: without a bind address this machine can reach, the
# library must refuse, naming the setting, before it creates anything.
if out=$(env -u CLEANROOM_BIND_ADDRESS go test -count=1 ./integration/singleton 2>&1); then
	echo "remote-test: the suite ran with services published on the remote engine's loopback address:"; echo "$out"; exit 1
fi
if ! grep -q "set bind_address (CLEANROOM_BIND_ADDRESS)" <<<"$out"; then
	echo "remote-test: without a bind address the suite failed, but not with the bind_address advice:"; echo "$out"; exit 1
fi
go test -race -count=1 ./integration/singleton ./integration/isolation ./examples/shop/...
go test -race -count=1 -run 'TestOneRunSharesOnePod|TestKeepWarmSecondRunCreatesNothing' ./integration/sharing
make -s check-leaks
