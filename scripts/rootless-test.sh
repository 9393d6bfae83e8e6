#!/usr/bin/env bash
# rootless-test.sh USER — run the integration suite again as an unprivileged
# user against that user's own rootless Podman service (make test does this
# when run as root; a normal user's make test is rootless already).
#
# The user is prepared by setup-podman.sh --rootless-user; the source tree is
# copied into the user's home (the checkout may sit where the user cannot
# read), and the tests run there with the user's own Go caches.
set -euo pipefail
u=${1:?usage: $0 USER}
top=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "rootless-test: run as root (it prepares and switches to $u)" >&2; exit 1; }

"$top/scripts/setup-podman.sh" --rootless-user "$u"
home=$(getent passwd "$u" | cut -d: -f6)
run_dir=/run/user/$(id -u "$u")
src=$home/cleanroom-src
rm -rf "$src"
runuser -u "$u" -- mkdir -p "$src"
tar -C "$top" --exclude=./.git --exclude=./bin -cf - . | runuser -u "$u" -- tar -C "$src" -xf -

echo "rootless-test: the integration suite as $u against unix://$run_dir/podman/podman.sock"
# A clean environment: nothing of root's engine settings may leak in.
exec runuser -u "$u" -- env -i \
	HOME="$home" USER="$u" LOGNAME="$u" XDG_RUNTIME_DIR="$run_dir" \
	PATH="/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="-buildvcs=false" \
	LANG=C.UTF-8 \
	make -C "$src" integration check-leaks
