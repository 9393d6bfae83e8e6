# Recipe for localhost/cleanroom/rabbitmq:3, read by scripts/build-images.sh.
# RabbitMQ 3.10 from Debian bookworm (rabbitmq-server 3.10.8), honouring the
# documented contract of the official docker.io/library/rabbitmq image in
# its -management variant: RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS and
# RABBITMQ_DEFAULT_VHOST (default guest/guest and "/", guest allowed from
# any address), AMQP on 5672, the management plugin enabled on 15672,
# data in /var/lib/rabbitmq (a VOLUME, also $HOME, where the Erlang cookie
# lives), logs on stdout, uid 999, CMD rabbitmq-server; a command that
# starts with "-" gets rabbitmq-server put in front of it.
# Unlike the official image, the node is named rabbit@localhost
# (RABBITMQ_NODENAME, overridable): the host name of a container in a pod
# is the pod's, and the node must not wait on resolving it.
IMAGE=localhost/cleanroom/rabbitmq:3
SUITE=bookworm
INCLUDE=rabbitmq-server
EXCLUDE=()
# The official image's uid and gid, created before rabbitmq-server's
# postinst so that it adopts them.
USERS=(rabbitmq:999:/var/lib/rabbitmq)
CHANGES=(
	'ENV PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	'ENV LANG=C.UTF-8'
	'ENV HOME=/var/lib/rabbitmq'
	'ENV RABBITMQ_DATA_DIR=/var/lib/rabbitmq'
	'ENV RABBITMQ_NODENAME=rabbit@localhost'
	'VOLUME /var/lib/rabbitmq'
	# One port a change: podman import (4.3) takes no list.
	'EXPOSE 4369'
	'EXPOSE 5671'
	'EXPOSE 5672'
	'EXPOSE 15671'
	'EXPOSE 15672'
	'EXPOSE 15691'
	'EXPOSE 15692'
	'EXPOSE 25672'
	'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'
	'CMD ["rabbitmq-server"]'
)

# customize ROOTFS: runs after every package is installed.
customize() {
	local r=$1
	[ -x "$r/usr/lib/rabbitmq/bin/rabbitmq-server" ] || { echo "no /usr/lib/rabbitmq/bin/rabbitmq-server in the package" >&2; return 1; }
	# The package's own node state and logs; the data directory starts empty.
	rm -rf "$r/var/lib/rabbitmq" "$r/var/log/rabbitmq"
	install -d -o 999 -g 999 -m 0755 "$r/var/lib/rabbitmq" "$r/var/log/rabbitmq"
	# Debian's environment file names the node after the host; ours is in
	# the image's ENV.
	: >"$r/etc/rabbitmq/rabbitmq-env.conf"
	# The entrypoint writes the default user's settings here at start.
	chown 999:999 "$r/etc/rabbitmq/conf.d"
	chmod 0644 "$r/etc/rabbitmq/enabled_plugins" "$r/etc/rabbitmq/conf.d/10-defaults.conf"
}
