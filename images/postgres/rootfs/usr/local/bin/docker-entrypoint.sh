#!/bin/bash
# Entrypoint of localhost/cleanroom/postgres, written for Cleanroom. It follows
# the documented contract of the official postgres image so that the same
# environment works with either image.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"; }
fail() { log "error: $*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR, or the content of the file named by VAR_FILE.
file_env() {
	local var=$1 file_var="${1}_FILE" def=${2:-}
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		fail "both $var and $file_var are set; they are exclusive"
	fi
	local val=$def
	if [ -n "${!var:-}" ]; then
		val=${!var}
	elif [ -n "${!file_var:-}" ]; then
		val=$(<"${!file_var}")
	fi
	export "$var"="$val"
	unset "$file_var"
}

# psql_init: psql against the temporary, socket-only init server.
psql_init() {
	PGPASSWORD= psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" \
		--dbname "${1:-$POSTGRES_DB}" "${@:2}"
}

run_init_scripts() {
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case $f in
		*.sh)
			if [ -x "$f" ]; then
				log "running $f"; "$f"
			else
				log "sourcing $f"; . "$f"
			fi
			;;
		*.sql) log "running $f"; psql_init "" -f "$f" ;;
		*.sql.gz) log "running $f"; gunzip -c "$f" | psql_init "" ;;
		*) log "ignoring $f" ;;
		esac
	done
}

init_database() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	local auth=${POSTGRES_HOST_AUTH_METHOD:-}
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
		fail "the database is uninitialized and POSTGRES_PASSWORD is not set.
  Set POSTGRES_PASSWORD to a non-empty value for the superuser, or
  POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password."
	fi

	log "initializing $PGDATA"
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		$POSTGRES_INITDB_ARGS >/dev/null
	# By default, the method the password was stored for: the server's
	# password_encryption (md5 before PostgreSQL 14, scram-sha-256 since).
	[ -n "$auth" ] || auth=$(postgres -D "$PGDATA" -C password_encryption)
	printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

	# A temporary server on the unix socket only, for the init scripts. Its
	# log is shown, as in the official image: "ready to accept connections"
	# appears twice, first for it, then for the real server.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
	if [ "$POSTGRES_DB" != postgres ]; then
		psql_init postgres -q --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	run_init_scripts
	pg_ctl -D "$PGDATA" -m fast -w stop
	log "PostgreSQL init process complete; ready for start up."
}

# "-c fsync=off" and friends mean "postgres -c fsync=off".
if [ "${1:0:1}" = - ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	# Started as root, as the official image is: make PGDATA and the socket
	# directory the server's, then run this script again as postgres.
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA" || true
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	install -d -o postgres -g postgres -m 3777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ "$1" = postgres ]; then
	mkdir -p "$PGDATA" || fail "cannot create PGDATA $PGDATA as $(id -un)"
	chmod 0700 "$PGDATA" 2>/dev/null || true
	[ -w "$PGDATA" ] || fail "PGDATA $PGDATA is not writable by $(id -un) (uid $(id -u))"
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		init_database
	fi
	unset POSTGRES_PASSWORD
fi

exec "$@"
