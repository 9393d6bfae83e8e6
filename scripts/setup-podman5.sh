#!/usr/bin/env bash
# setup-podman5.sh — a Podman 5.4 engine on this machine, beside the host's
# Podman 4.3, for `make podman5`: the engine Fedora and RHEL ship (crun,
# netavark, pasta), rootful and rootless.
#
#   scripts/setup-podman5.sh                   make it ready (idempotent, quiet when ready)
#   scripts/setup-podman5.sh --print rootful   the variables a test run against it needs
#   scripts/setup-podman5.sh --print rootless  (the same for the rootless engine)
#   scripts/setup-podman5.sh --print runc      (the same for the rootful one with runc)
#   scripts/setup-podman5.sh --stop            remove the engine container (state stays)
#
# Debian 13 packages Podman 5.4, but installing them on a Debian 12 host
# would replace its libc. So the engine runs in a container of its own
# ("Podman in Podman"): the image localhost/cleanroom/podman5 (images/podman5,
# built from Debian trixie packages by build-images.sh, rebuilt only when its
# recipe changes) runs --privileged on the host's Podman as the container
# cleanroom-podman5, with catatonit as its first process. Inside, a rootful
# API service and the rootless one of user cleanroom-p5 (pasta), both with
# crun, and a rootful one with runc listen on sockets under /run/podman,
# bind-mounted from $state/run, so the host reaches them as
# unix://$state/run/podman.sock, unix://$state/run/rootless/podman.sock and
# unix://$state/run/runc/podman.sock. Their storage is $state/storage on
# the host's disk (no overlay on overlay), their run state a tmpfs (a
# restart is a reboot for them). Ports the engines publish are reached at
# the container's address on the host's Podman network, so test runs set
# CLEANROOM_BIND_ADDRESS to it, as a user of a Podman VM would.
#
# The local images (localhost/cleanroom/*) are copied into both engines'
# stores when they differ there. The host's test registry (setup-registry.sh)
# is served read-only on the engine's own 127.0.0.1:5000, so image references
# of the pull tests stay the same. Needs root; nothing on the host but the
# container and $state changes. It carries no io.cleanroom.managed label, so
# Cleanroom's clean-up never touches it.
set -euo pipefail

say() { printf 'setup-podman5: %s\n' "$*"; }
die() { printf 'setup-podman5: error: %s\n' "$*" >&2; exit 1; }

top=$(cd "$(dirname "$0")/.." && pwd)
state=${CLEANROOM_PODMAN5_STATE:-/var/lib/cleanroom-podman5}
name=cleanroom-podman5
image=localhost/cleanroom/podman5:5.4
registry_data=/var/lib/cleanroom-registry/data

[ "$(id -u)" -eq 0 ] || die "run as root (it starts a privileged container on the host's Podman)"

ping_socket() {
	[ -S "$1" ] || return 1
	[ "$(curl -s --max-time 3 --unix-socket "$1" http://d/_ping 2>/dev/null)" = OK ]
}

ip_of() { podman inspect --format '{{.NetworkSettings.IPAddress}}' "$name"; }
gateway_of() { podman inspect --format '{{.NetworkSettings.Gateway}}' "$name"; }

case ${1:-} in
--print)
	kind=${2:?--print needs rootful, rootless or runc}
	case $kind in
	rootful) sock=$state/run/podman.sock ;;
	rootless) sock=$state/run/rootless/podman.sock ;;
	runc) sock=$state/run/runc/podman.sock ;;
	*) die "--print $kind: want rootful, rootless or runc" ;;
	esac
	ping_socket "$sock" || die "no Podman 5 engine answers on $sock; run $0 first"
	echo "CONTAINER_HOST=unix://$sock"
	echo "CLEANROOM_BIND_ADDRESS=$(ip_of)"
	echo "CLEANROOM_TEST_HOST_IP=$(gateway_of)"
	exit 0
	;;
--stop)
	podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
	exit 0
	;;
"") ;;
*) die "usage: $0 [--print rootful|rootless|runc | --stop]" ;;
esac

"$top/scripts/build-images.sh" podman5
want_id=$(podman image inspect --format '{{.Id}}' "$image")

# The container runs the current image with the current set-up; a change of
# either (the image's ID, this script) starts it anew.
setup_hash=$(sha256sum "$0" | cut -c1-16)
running=0
socks=("$state/run/podman.sock" "$state/run/rootless/podman.sock" "$state/run/runc/podman.sock")
all_answer() {
	local s
	for s in "${socks[@]}"; do ping_socket "$s" || return 1; done
}
if [ "$(podman inspect --format '{{.State.Running}} {{.Image}} {{index .Config.Labels "io.cleanroom.podman5.setup"}}' "$name" 2>/dev/null || true)" = "true $want_id $setup_hash" ] &&
	all_answer; then
	running=1
fi
if [ $running = 0 ]; then
	podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
	install -d -m 0755 "$state/storage" "$state/run"
	mounts=(-v "$state/run:/run/podman" -v "$state/storage:/var/lib/containers")
	[ -d "$registry_data" ] && mounts+=(-v "$registry_data:$registry_data:ro")
	# --tmpfs /run: the engines' run state must not outlive the container
	# (stale state otherwise); /run/podman is mounted over it.
	podman run -d --name "$name" --privileged \
		--label io.cleanroom.podman5.setup="$setup_hash" \
		--tmpfs /run:rw,nosuid,nodev,exec,mode=755 \
		"${mounts[@]}" "$image" >/dev/null ||
		die "podman run $image failed"
	for _ in $(seq 1 300); do
		all_answer && break
		sleep 0.1
	done
	ping_socket "$state/run/podman.sock" ||
		die "the rootful Podman 5 service did not answer on $state/run/podman.sock; see: podman logs $name"
	ping_socket "$state/run/rootless/podman.sock" ||
		die "the rootless Podman 5 service did not answer on $state/run/rootless/podman.sock; see $state/run/rootless/service.log"
	ping_socket "$state/run/runc/podman.sock" ||
		die "the rootful Podman 5 service with runc did not answer on $state/run/runc/podman.sock; see $state/run/runc/service.log"
	say "started Podman $(curl -s --unix-socket "$state/run/podman.sock" http://d/v5.0.0/libpod/version | sed -n 's/.*"Version":"\([^"]*\)".*/\1/p') in container $name (rootful and rootless with crun, rootful with runc; ports at $(ip_of))"
fi

# The local images, in both engines' stores.
for sock in "$state/run/podman.sock" "$state/run/rootless/podman.sock"; do
	for img in $(podman images --format '{{.Repository}}:{{.Tag}}' --filter reference='localhost/cleanroom/*' | grep '^localhost/cleanroom/' | grep -v '^localhost/cleanroom/podman5:'); do
		want=$(podman image inspect --format '{{.Id}}' "$img")
		have=$(podman --url "unix://$sock" image inspect --format '{{.Id}}' "$img" 2>/dev/null || true)
		if [ "$want" != "$have" ]; then
			podman save -q "$img" | podman --url "unix://$sock" load -q >/dev/null ||
				die "copying $img into the engine at $sock failed"
			say "copied $img into the engine at unix://$sock"
		fi
	done
done

if [ $running = 0 ]; then
	# Prove both engines work: a pod publishing a port on the container's
	# address, reached from here.
	addr=$(ip_of)
	for sock in "${socks[@]}"; do
		p=(podman --url "unix://$sock")
		"${p[@]}" pod rm -f cleanroom-p5-trial >/dev/null 2>&1 || true
		"${p[@]}" pod create --name cleanroom-p5-trial -p "$addr::8080" >/dev/null ||
			die "the trial pod on unix://$sock failed"
		"${p[@]}" run -d --pod cleanroom-p5-trial --name cleanroom-p5-trial-httpd localhost/cleanroom/busybox:latest busybox \
			httpd -f -p 8080 -h /etc >/dev/null || die "the trial container on unix://$sock failed"
		port=$("${p[@]}" port cleanroom-p5-trial-httpd 8080/tcp | sed 's/.*://')
		ok=0
		for _ in $(seq 1 50); do
			curl -s -o /dev/null --max-time 1 "http://$addr:$port/hostname" && { ok=1; break; }
			sleep 0.1
		done
		"${p[@]}" pod rm -f -t 0 cleanroom-p5-trial >/dev/null 2>&1 || true
		[ $ok = 1 ] || die "the trial pod on unix://$sock published port 8080 at $addr:$port, but nothing answered there"
	done
fi
