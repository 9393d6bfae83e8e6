# Recipe for localhost/cleanroom/mariadb:10.11, read by scripts/build-images.sh.
# MariaDB 10.11 from Debian bookworm, honouring the documented contract of the
# official docker.io/library/mariadb image: MARIADB_ROOT_PASSWORD (or
# MARIADB_ALLOW_EMPTY_ROOT_PASSWORD / MARIADB_RANDOM_ROOT_PASSWORD),
# MARIADB_ROOT_HOST, MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD, the
# *_HASH and *_FILE variants and the MYSQL_* aliases; mariadb-install-db on
# first start into an empty data directory; scripts in
# /docker-entrypoint-initdb.d; port 3306 on all addresses; uid 999.
# Laid out as the official image is: /var/lib/mysql is a VOLUME, and the
# entrypoint starts as root, makes the data directory the server's and drops
# to mysql (setpriv, where the official image has gosu). A --datadir flag
# (as with the official image) puts the data elsewhere, e.g. a directory
# inside a tmpfs mount, or one that a commit keeps.
IMAGE=localhost/cleanroom/mariadb:10.11
SUITE=bookworm
# xz-utils and zstd: init scripts may be .sql.xz and .sql.zst.
INCLUDE=mariadb-server,mariadb-client,tzdata,xz-utils,zstd
# Not unpacked at all: Galera (no cluster here) and the server's test and
# benchmark leftovers.
EXCLUDE=(
	'/usr/lib/galera/*'
	'/usr/share/galera/*'
	'/usr/lib/mysql/plugin/ha_mroonga*'
	'/usr/share/mysql/mroonga/*'
)
# The official image's uid and gid, created before mariadb-server's postinst
# so that it adopts them instead of picking its own.
USERS=(mysql:999:/var/lib/mysql)
CHANGES=(
	'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	'ENV LANG=C.UTF-8'
	'VOLUME /var/lib/mysql'
	'EXPOSE 3306'
	'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'
	'CMD ["mariadbd"]'
)

# customize ROOTFS: runs after every package is installed.
customize() {
	local r=$1
	# The package's postinst initialised /var/lib/mysql (root by unix socket
	# only); the entrypoint makes its own on first start.
	rm -rf "$r/var/lib/mysql" "$r/etc/mysql/debian.cnf" "$r/etc/mysql/debian-start"
	install -d -o 999 -g 999 -m 0755 "$r/var/lib/mysql"
	install -d -o 999 -g 999 -m 0755 "$r/run/mysqld"
	install -d -o 999 -g 999 -m 0755 "$r/docker-entrypoint-initdb.d"
	# Listen on every address of the container, IPv6 too: no bind-address,
	# as in the official image (Debian's says 127.0.0.1).
	sed -i 's/^bind-address\s*=.*/#&/' "$r/etc/mysql/mariadb.conf.d/50-server.cnf"
	# Of the server's and client's programs (each links its libraries in
	# statically: 4-5 MB apiece), only what the entrypoint and tests use.
	local f keep=" mariadb mysql mariadb-admin mysqladmin mariadb-dump mysqldump my_print_defaults "
	keep+=" mariadb-install-db mysql_install_db mariadb-tzinfo-to-sql mysql_tzinfo_to_sql "
	for f in $(cat "$r"/var/lib/dpkg/info/mariadb-{server,server-core,client,client-core}.list | grep '^/usr/bin/'); do
		case $keep in *" ${f##*/} "*) ;; *) rm -f "$r$f" ;; esac
	done
	# Only the English server messages.
	find "$r/usr/share/mysql" -mindepth 1 -maxdepth 1 -type d \! -name english \! -name charsets -exec sh -c 'test -e "$0/errmsg.sys" && rm -rf "$0"' {} \;
	# Nothing at run time needs Perl (mariadb-install-db is a shell
	# script): drop it and the Perl tools, as the postgres recipe does.
	rm -rf "$r/usr/share/perl" "$r/usr/lib/x86_64-linux-gnu/perl" \
		"$r"/usr/lib/x86_64-linux-gnu/libperl.so* "$r/usr/share/i18n"
}
