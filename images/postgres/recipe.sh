# Recipe for localhost/cleanroom/postgres:15, read by scripts/build-images.sh.
# PostgreSQL 15 from Debian bookworm (another major version: a recipe that
# sets PG_MAJOR, SUITE and BASE=postgres, then sources this one), honouring
# the contract of the official docker.io/library/postgres image:
# POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD,
# POSTGRES_INITDB_ARGS and the *_FILE variants; initdb on first start into an empty PGDATA; scripts in
# /docker-entrypoint-initdb.d; port 5432 on all addresses; uid 999; SIGINT.
# Laid out as the official image is: PGDATA=/var/lib/postgresql/data is a
# VOLUME, and the entrypoint starts as root, makes PGDATA the server's and
# drops to postgres (setpriv, where the official image has gosu).
PG_MAJOR=${PG_MAJOR:-15}
IMAGE=localhost/cleanroom/postgres:$PG_MAJOR
SUITE=${SUITE:-bookworm}
INCLUDE=postgresql-$PG_MAJOR
# Not unpacked at all: LLVM JIT (jit is off) and its solver, ~100 MB.
EXCLUDE=(
	'/usr/lib/x86_64-linux-gnu/libLLVM*'
	'/usr/lib/x86_64-linux-gnu/libz3*'
	"/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit*"
	"/usr/lib/postgresql/$PG_MAJOR/lib/bitcode/*"
)
# The official image's uid and gid, created before postgresql-common's
# postinst so that it adopts them instead of picking its own.
USERS=(postgres:999:/var/lib/postgresql)
CHANGES=(
	"ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	'ENV LANG=C.UTF-8'
	"ENV PG_MAJOR=$PG_MAJOR"
	'ENV PGDATA=/var/lib/postgresql/data'
	'VOLUME /var/lib/postgresql/data'
	'WORKDIR /var/lib/postgresql'
	'EXPOSE 5432'
	'STOPSIGNAL SIGINT'
	'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'
	'CMD ["postgres"]'
)

# customize ROOTFS: runs after every package is installed.
customize() {
	local r=$1
	# postgresql-common made a "main" cluster; the entrypoint makes its own.
	rm -rf "$r/etc/postgresql/$PG_MAJOR" "$r/var/lib/postgresql/$PG_MAJOR"
	# Listen on every address of the container, as the official image does.
	sed -i "s/^#listen_addresses = 'localhost'/listen_addresses = '*'/" \
		"$r/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
	grep -q "^listen_addresses = '\*'" "$r/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
	# No JIT: its libraries were never unpacked.
	echo "jit = off" >>"$r/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
	rm -rf "$r/usr/share/postgresql/$PG_MAJOR/man"
	# The image's PATH reaches the server's own binaries, so the Perl wrappers
	# of postgresql-common (and the 45 MB of Perl behind them) are not needed
	# at run time; nor are locale sources (C.UTF-8 is built into glibc).
	rm -rf "$r/usr/share/perl" "$r/usr/lib/x86_64-linux-gnu/perl" \
		"$r"/usr/lib/x86_64-linux-gnu/libperl.so* "$r/usr/share/i18n"
	install -d -o 999 -g 999 -m 3777 "$r/run/postgresql"
	install -d -o 999 -g 999 -m 1777 "$r/var/lib/postgresql/data"
	install -d -o 999 -g 999 -m 0755 "$r/docker-entrypoint-initdb.d"
}
