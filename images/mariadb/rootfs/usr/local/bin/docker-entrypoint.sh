#!/bin/bash
# Entrypoint of localhost/cleanroom/mariadb, written for Cleanroom. It follows
# the documented contract of the official mariadb image so that the same
# environment and command line work with either image:
#
#   MARIADB_ROOT_PASSWORD | MARIADB_ROOT_PASSWORD_HASH |
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD | MARIADB_RANDOM_ROOT_PASSWORD  (one needed)
#   MARIADB_ROOT_HOST (default %), MARIADB_DATABASE, MARIADB_USER,
#   MARIADB_PASSWORD | MARIADB_PASSWORD_HASH, MARIADB_INITDB_SKIP_TZINFO;
#   each also as MYSQL_* (MYSQL_ALLOW_EMPTY_PASSWORD for the empty root
#   password) and as *_FILE (the value read from that file).
#
# The data directory is /var/lib/mysql unless the command line (or a
# configuration file) says --datadir=DIR. It is initialised when it holds no
# "mysql" directory; otherwise the server starts on it straight away.
set -Eeuo pipefail
shopt -s nullglob

log() { printf '%s [Note] [Entrypoint]: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S')" "$*"; }
warn() { printf '%s [Warn] [Entrypoint]: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S')" "$*" >&2; }
fail() { printf '%s [ERROR] [Entrypoint]: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S')" "$*" >&2; exit 1; }

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

# maria_env NAME [MYSQL_ALIAS] [DEFAULT]: MARIADB_NAME, else its MYSQL_ alias
# (default MYSQL_NAME), both from *_FILE too; afterwards both hold the value.
maria_env() {
	local m=MARIADB_$1 y=${2:-MYSQL_$1}
	file_env "$y"
	file_env "$m" "${!y:-${3:-}}"
	export "$y"="${!m}"
}

# server_option NAME: the last value of --NAME (or --NAME_WITH_UNDERSCORES)
# in the server's option files, then on its command line; empty if none.
server_option() {
	local want=$1 val="" a name next=0
	while IFS= read -r a; do
		name=${a%%=*}; name=${name//_/-}
		[ "$name" = "--$want" ] && val=${a#*=}
	done < <(my_print_defaults --mysqld 2>/dev/null || true)
	for a in "${@:2}"; do
		if [ $next = 1 ]; then val=$a; next=0; continue; fi
		case $a in
		--*=*)
			name=${a%%=*}; name=${name//_/-}
			[ "$name" = "--$want" ] && val=${a#*=} ;;
		--*)
			name=${a//_/-}
			[ "$name" = "--$want" ] && next=1 ;;
		-h?*) [ "$want" = datadir ] && val=${a#-h} ;;
		-h) [ "$want" = datadir ] && next=1 ;;
		esac
	done
	printf '%s' "$val"
}

# sql_string TEXT: TEXT as an SQL string literal. sql_name TEXT: as a quoted
# identifier.
sql_string() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }
sql_name() { printf '`%s`' "${1//\`/\`\`}"; }

# mariadb_init [DATABASE]: the mariadb client on the temporary init server,
# as root. MYSQL_PWD keeps the password off the process list.
mariadb_init() {
	MYSQL_PWD=${root_password:-} mariadb --protocol=socket --socket="$SOCKET" \
		--user=root --host=localhost --batch --skip-column-names ${1:+--database="$1"}
}

run_init_scripts() {
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case $f in
		*.sh)
			if [ -x "$f" ]; then
				log "running $f"; "$f"
			else
				log "sourcing $f"; . "$f"
			fi
			;;
		*.sql) log "running $f"; mariadb_init "$MARIADB_DATABASE" <"$f" ;;
		*.sql.gz) log "running $f"; gunzip -c "$f" | mariadb_init "$MARIADB_DATABASE" ;;
		*.sql.xz) log "running $f"; xz -dc "$f" | mariadb_init "$MARIADB_DATABASE" ;;
		*.sql.zst) log "running $f"; zstd -dc "$f" | mariadb_init "$MARIADB_DATABASE" ;;
		*) log "ignoring $f" ;;
		esac
	done
}

# setup_sql: the statements that apply the environment to a fresh data
# directory: root's password and hosts, the database, the user.
setup_sql() {
	local root_auth=""
	if [ -n "$MARIADB_ROOT_PASSWORD_HASH" ]; then
		root_auth="IDENTIFIED BY PASSWORD $(sql_string "$MARIADB_ROOT_PASSWORD_HASH")"
	elif [ -n "$root_password" ]; then
		root_auth="IDENTIFIED BY $(sql_string "$root_password")"
	fi
	echo "SET @@SESSION.SQL_LOG_BIN=0;"
	echo "SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');"
	# Only root@localhost and root@MARIADB_ROOT_HOST, as in the official image.
	echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
	echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
	# A hash is set for root@localhost after the init scripts, which log
	# in as root@localhost with the password known until then (none).
	if [ -n "$root_auth" ] && [ -z "$MARIADB_ROOT_PASSWORD_HASH" ]; then
		echo "ALTER USER root@localhost $root_auth;"
	fi
	if [ "$MARIADB_ROOT_HOST" != localhost ]; then
		local h; h=$(sql_string "$MARIADB_ROOT_HOST")
		echo "CREATE USER root@$h $root_auth;"
		echo "GRANT ALL ON *.* TO root@$h WITH GRANT OPTION;"
		echo "GRANT PROXY ON ''@'%' TO root@$h WITH GRANT OPTION;"
	fi
	if [ -n "$MARIADB_DATABASE" ]; then
		echo "CREATE DATABASE IF NOT EXISTS $(sql_name "$MARIADB_DATABASE");"
	fi
	if [ -n "$MARIADB_USER" ]; then
		local u user_auth=""
		u="$(sql_string "$MARIADB_USER")@'%'"
		if [ -n "$MARIADB_PASSWORD_HASH" ]; then
			user_auth="IDENTIFIED BY PASSWORD $(sql_string "$MARIADB_PASSWORD_HASH")"
		elif [ -n "$MARIADB_PASSWORD" ]; then
			user_auth="IDENTIFIED BY $(sql_string "$MARIADB_PASSWORD")"
		fi
		echo "CREATE USER $u $user_auth;"
		if [ -n "$MARIADB_DATABASE" ]; then
			echo "GRANT ALL ON $(sql_name "${MARIADB_DATABASE//_/\\_}").* TO $u;"
		fi
	fi
}

# load_env: the MARIADB_* settings from their aliases and *_FILE files.
# It runs before the drop to mysql, as in the official image, so that a
# secret only root may read (a 0400 file) works; the values pass on in
# the environment.
load_env() {
	maria_env ROOT_PASSWORD
	maria_env ROOT_PASSWORD_HASH
	maria_env ALLOW_EMPTY_ROOT_PASSWORD MYSQL_ALLOW_EMPTY_PASSWORD
	maria_env RANDOM_ROOT_PASSWORD
	maria_env ROOT_HOST "" %
	maria_env DATABASE
	maria_env USER
	maria_env PASSWORD
	maria_env PASSWORD_HASH
	maria_env INITDB_SKIP_TZINFO
}

init_database() {
	if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "$MARIADB_ROOT_PASSWORD_HASH" ] &&
		[ -z "$MARIADB_ALLOW_EMPTY_ROOT_PASSWORD" ] && [ -z "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
		fail "the database is uninitialized and the root password is not set.
  Set one of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH,
  MARIADB_ALLOW_EMPTY_ROOT_PASSWORD or MARIADB_RANDOM_ROOT_PASSWORD."
	fi
	if [ "$MARIADB_USER" = root ]; then
		fail "MARIADB_USER=root: MARIADB_USER and MARIADB_PASSWORD make a regular user; set root's password with MARIADB_ROOT_PASSWORD"
	fi
	if [ -n "$MARIADB_PASSWORD$MARIADB_PASSWORD_HASH" ] && [ -z "$MARIADB_USER" ]; then
		warn "MARIADB_PASSWORD is set but MARIADB_USER is not: no user is made"
	fi
	if [ -n "$MARIADB_USER" ] && [ -z "$MARIADB_PASSWORD$MARIADB_PASSWORD_HASH" ]; then
		warn "MARIADB_USER is set without MARIADB_PASSWORD: the user has an empty password"
	fi
	root_password=$MARIADB_ROOT_PASSWORD
	if [ -z "$root_password" ] && [ -z "$MARIADB_ROOT_PASSWORD_HASH" ] && [ -n "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
		root_password=$(tr -dc 'A-Za-z0-9!#%+,-./:=?@^_~' </dev/urandom | head -c 32 || true)
		log "GENERATED ROOT PASSWORD: $root_password"
	fi

	log "initializing $DATADIR"
	local boot=(
		--skip-log-bin --expire-logs-days=0
		--loose-innodb-buffer-pool-load-at-startup=0 --loose-innodb-buffer-pool-dump-at-shutdown=0
	)
	# Time zone tables for CONVERT_TZ(), as in the official image, loaded by
	# the bootstrap itself (much faster than through a client).
	local extra=()
	if [ -z "$MARIADB_INITDB_SKIP_TZINFO" ] && [ -d /usr/share/zoneinfo ]; then
		tzsql=$(mktemp /tmp/tzinfo.XXXXXX.sql)
		mariadb-tzinfo-to-sql /usr/share/zoneinfo >"$tzsql" 2>/dev/null
		extra=(--extra-file="$tzsql")
	fi
	mariadb-install-db --datadir="$DATADIR" --rpm --cross-bootstrap --skip-test-db \
		--auth-root-authentication-method=normal --old-mode=UTF8_IS_UTF8MB3 \
		--default-time-zone=SYSTEM --enforce-storage-engine= "${extra[@]}" "${@:2}" "${boot[@]}" >/dev/null ||
		fail "mariadb-install-db failed"
	rm -f "${tzsql:-}"

	# A temporary server on the unix socket only, for the set-up and the init
	# scripts, with the real server's flags (a small buffer pool, no flushing).
	"$1" "${@:2}" --skip-networking --socket="$SOCKET" --default-time-zone=SYSTEM \
		--wsrep-on=OFF --skip-slave-start "${boot[@]}" &
	local pid=$! i
	for ((i = 0; ; i++)); do
		if MYSQL_PWD= mariadb --protocol=socket --socket="$SOCKET" --user=root \
			--host=localhost --connect-timeout=1 -e 'SELECT 1' >/dev/null 2>&1; then
			break
		fi
		kill -0 "$pid" 2>/dev/null || fail "the temporary server exited during init"
		[ $i -lt 600 ] || fail "the temporary server did not start within 30 s"
		sleep 0.05
	done

	# The set-up runs as root with the empty password install-db left.
	setup_sql | MYSQL_PWD= mariadb --protocol=socket --socket="$SOCKET" --user=root --host=localhost ||
		fail "setting up root, the database and the user failed"
	run_init_scripts
	if [ -n "$MARIADB_ROOT_PASSWORD_HASH" ]; then
		echo "ALTER USER root@localhost IDENTIFIED BY PASSWORD $(sql_string "$MARIADB_ROOT_PASSWORD_HASH");" | mariadb_init ||
			fail "setting root@localhost's password hash failed"
	fi

	kill "$pid"
	wait "$pid" || fail "the temporary server did not stop cleanly"
	log "MariaDB init process complete; ready for start up."
}

# "--innodb-buffer-pool-size=64M" and friends mean "mariadbd --innodb-…".
if [ "${1:0:1}" = - ]; then
	set -- mariadbd "$@"
fi

case $1 in
mariadbd | mysqld) server=1 ;;
*) server=0 ;;
esac

if [ $server = 1 ]; then
	DATADIR=$(server_option datadir "${@:2}")
	DATADIR=${DATADIR:-/var/lib/mysql}
	SOCKET=$(server_option socket "${@:2}")
	SOCKET=${SOCKET:-/run/mysqld/mysqld.sock}
fi

if [ $server = 1 ]; then
	load_env
fi

if [ $server = 1 ] && [ "$(id -u)" = 0 ]; then
	# Started as root, as the official image is: make the data directory and
	# the socket's directory the server's, then run this script again as mysql.
	mkdir -p "$DATADIR"
	find "$DATADIR" \! -user mysql -exec chown mysql:mysql '{}' +
	install -d -o mysql -g mysql -m 0755 "$(dirname "$SOCKET")"
	exec setpriv --reuid=mysql --regid=mysql --init-groups "$BASH_SOURCE" "$@"
fi

if [ $server = 1 ]; then
	mkdir -p "$DATADIR" || fail "cannot create the data directory $DATADIR as $(id -un)"
	[ -w "$DATADIR" ] || fail "the data directory $DATADIR is not writable by $(id -un) (uid $(id -u))"
	if [ ! -d "$DATADIR/mysql" ]; then
		init_database "$@"
	fi
	unset MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD MARIADB_PASSWORD MYSQL_PASSWORD \
		MARIADB_ROOT_PASSWORD_HASH MARIADB_PASSWORD_HASH root_password
fi

exec "$@"
