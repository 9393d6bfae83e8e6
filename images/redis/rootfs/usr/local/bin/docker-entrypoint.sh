#!/bin/sh
# Entrypoint of localhost/cleanroom/redis, written for Cleanroom: the same
# command line works as with the official redis image.
set -eu

# "--appendonly yes" or "redis.conf" alone mean redis-server with them.
case ${1:-} in
-* | *.conf) set -- redis-server "$@" ;;
esac

# The official image builds Redis with protected mode off: clients reach it
# through the pod's port forward, never from loopback. Debian's keeps it on.
if [ "${1:-}" = redis-server ]; then
	case " $* " in
	*" --protected-mode "*) ;;
	*) set -- "$@" --protected-mode no ;;
	esac
fi

# Started as root, as the official image is: the server runs as redis.
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis:redis '{}' +
	exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

exec "$@"
