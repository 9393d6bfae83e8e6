#!/usr/bin/env bash
# remote-test.sh USER — the integration suite's core scenarios against a
# "remote" Podman: USER's rootless service behind an sshd on 127.0.0.1:2222
# (scripts/setup-remote.sh), reached as CONTAINER_HOST=ssh://… with a key,
# the way a suite uses a bigger Podman host. Run as root (make test does).
set -euo pipefail
u=${1:?usage: $0 USER}
cd "$(dirname "$0")/.."
vars=$(scripts/setup-remote.sh "$u" --print)
for v in $vars; do export "${v?}"; done
echo "remote-test: core scenarios over $CONTAINER_HOST"
go test -race -count=1 ./integration/singleton ./integration/isolation ./examples/shop/...
go test -race -count=1 -run 'TestOneRunSharesOnePod|TestKeepWarmSecondRunCreatesNothing' ./integration/sharing
make -s check-leaks
