#!/bin/bash
# Entrypoint of localhost/cleanroom/rabbitmq, written for Cleanroom. It
# follows the documented contract of the official rabbitmq image so that the
# same environment and command line work with either image:
#
#   RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS  the user made on first start
#                                                 (default guest / guest)
#   RABBITMQ_DEFAULT_VHOST                        its virtual host (default /)
#
# A command that starts with "-" is rabbitmq-server's flags. Started as
# root, it makes the data directory the server's and drops to rabbitmq
# (setpriv, where the official image has gosu).
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
	set -- rabbitmq-server "$@"
fi

if [ "$1" = rabbitmq-server ]; then
	# The default user's settings, as rabbitmq.conf lines (the server
	# reads conf.d at boot). Cuttlefish takes a value to the end of its
	# line: a newline in one would inject settings.
	conf=/etc/rabbitmq/conf.d/20-default-user.conf
	: >"$conf"
	for v in USER PASS VHOST; do
		var=RABBITMQ_DEFAULT_$v
		val=${!var:-}
		[ -n "$val" ] || continue
		case $val in *$'\n'*) echo "docker-entrypoint: $var holds a newline" >&2; exit 1 ;; esac
		printf 'default_%s = %s\n' "${v,,}" "$val" >>"$conf"
	done
	if [ "$(id -u)" = 0 ]; then
		data=${RABBITMQ_DATA_DIR:-/var/lib/rabbitmq}
		mkdir -p "$data"
		chown -R rabbitmq:rabbitmq "$data" "$conf"
		exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
	fi
fi
exec "$@"
