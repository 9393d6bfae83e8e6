# Recipe for localhost/cleanroom/redis:7, read by scripts/build-images.sh.
# Redis 7 from Debian bookworm, honouring the contract of the official
# docker.io/library/redis image: redis-server on port 6379 on all addresses
# with protected mode off, redis-cli, working directory /data, uid 999.
# Laid out as the official image is: /data is a VOLUME, and the entrypoint
# starts as root, makes /data the server's and drops to redis (setpriv,
# where the official image has gosu).
IMAGE=localhost/cleanroom/redis:7
SUITE=bookworm
INCLUDE=redis-server
EXCLUDE=()
USERS=(redis:999:/var/lib/redis)
CHANGES=(
	'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	'ENV LANG=C.UTF-8'
	'VOLUME /data'
	'WORKDIR /data'
	'EXPOSE 6379'
	'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'
	'CMD ["redis-server"]'
)

customize() {
	local r=$1
	install -d -o 999 -g 999 -m 0755 "$r/data"
}
