# Recipe for localhost/cleanroom/nats:2, read by scripts/build-images.sh.
# NATS server 2.9 from Debian bookworm (nats-server 2.9.10), honouring the
# contract of the official docker.io/library/nats image (its scratch
# variant): the entrypoint is the server binary at /nats-server, so that
# the command is the server's flags alone ("-js -m 8222"); without a
# command it reads nats-server.conf from the working directory /, which
# listens for clients on 4222, for monitoring on 8222 and for cluster
# routes on 6222. The server runs as root, as in the official image.
# The binary is on PATH as nats-server too, as in the alpine variant.
IMAGE=localhost/cleanroom/nats:2
SUITE=bookworm
INCLUDE=nats-server
EXCLUDE=()
USERS=()
CHANGES=(
	'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	'WORKDIR /'
	# One port a change: podman import (4.3) takes no list.
	'EXPOSE 4222'
	'EXPOSE 6222'
	'EXPOSE 8222'
	'ENTRYPOINT ["/nats-server"]'
	'CMD ["--config", "nats-server.conf"]'
)

customize() {
	local r=$1
	# Debian installs the server as /usr/sbin/nats-server (on PATH).
	[ -x "$r/usr/sbin/nats-server" ] || { echo "no /usr/sbin/nats-server in the nats-server package" >&2; return 1; }
	ln -sf /usr/sbin/nats-server "$r/nats-server"
}
