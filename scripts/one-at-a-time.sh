#!/usr/bin/env bash
# one-at-a-time.sh LOCKFILE COMMAND... — run COMMAND holding an exclusive
# flock(2) on LOCKFILE, after waiting (and saying so) while another run holds
# it. make test runs through it: two runs on one engine would count each
# other's pods as leaks.
#
# Nothing COMMAND starts inherits the lock (flock -o): the daemons a first
# make test leaves running (the Podman API service, the test registry, the
# Podman 5 engine) would otherwise hold it for their lifetime, and every
# later make test would wait forever.
set -euo pipefail
lock=${1:?usage: $0 LOCKFILE COMMAND...}
shift
[ $# -gt 0 ] || { echo "usage: $0 LOCKFILE COMMAND..." >&2; exit 2; }
flock -n "$lock" true ||
	echo "make test: another make test of this user is running on this engine; waiting for it to end"
exec flock -o "$lock" "$@"
