#!/usr/bin/env bash
# setup-registry.sh — a real container registry for the pull tests, on this
# machine: Debian's docker-registry (the CNCF distribution registry) serving
# plain HTTP on 127.0.0.1:5000, marked insecure for Podman, holding the
# local images pushed into it as 127.0.0.1:5000/cleanroom/<name>:<tag>.
# Idempotent and quiet when all is in place. Run as root, after
# setup-podman.sh and build-images.sh.
set -euo pipefail
addr=127.0.0.1:5000
state=/var/lib/cleanroom-registry
say() { printf 'setup-registry: %s\n' "$*" >&2; }
die() { printf 'setup-registry: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"

if ! command -v docker-registry >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null 2>&1 ||
		die "apt-get install docker-registry failed"
	say "installed docker-registry"
fi
install -d -m 0755 "$state" "$state/data"
cat >"$state/config.yml.new" <<EOF
# Written by cleanroom scripts/setup-registry.sh
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/data
  delete:
    enabled: true
http:
  addr: $addr
EOF
restart=0
if ! cmp -s "$state/config.yml.new" "$state/config.yml" 2>/dev/null; then
	mv "$state/config.yml.new" "$state/config.yml"
	restart=1
else
	rm -f "$state/config.yml.new"
fi
answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$addr/v2/")" = 200 ]; }
if [ $restart = 1 ]; then pkill -f "docker-registry serve $state/config.yml" 2>/dev/null || true; sleep 0.3; fi
if ! answers; then
	nohup setsid docker-registry serve "$state/config.yml" </dev/null >>"$state/registry.log" 2>&1 &
	for _ in $(seq 1 50); do answers && break; sleep 0.1; done
	answers || die "the registry did not answer on $addr; see $state/registry.log"
	say "started the registry on $addr"
fi

conf=/etc/containers/registries.conf.d/50-cleanroom-test-registry.conf
# 127.0.0.1:5001 is where the pull tests put a throttling proxy in front of
# the registry, so that a download lasts long enough to report progress.
want="# Written by cleanroom scripts/setup-registry.sh: the test registry speaks plain HTTP.
[[registry]]
location = \"$addr\"
insecure = true

[[registry]]
location = \"127.0.0.1:5001\"
insecure = true"
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
	mkdir -p "$(dirname "$conf")"
	printf '%s\n' "$want" >"$conf"
	say "marked $addr insecure in $conf"
	# A running API service keeps the registry configuration it started
	# with: restart the rootful one (and stop rootless ones; their set-up
	# starts them again).
	if pgrep -f "podman system service" >/dev/null; then
		pkill -f "podman system service" || true
		sleep 0.5
		"$(dirname "$0")/setup-podman.sh" >&2
		say "restarted the Podman API service to read $conf"
	fi
fi

for img in localhost/cleanroom/redis:7 localhost/cleanroom/busybox:latest; do
	name=${img#localhost/}
	repo=${name%%:*} tag=${name#*:}
	if [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$addr/v2/$repo/manifests/$tag")" != 200 ]; then
		podman push -q --tls-verify=false "$img" "$addr/$name" >/dev/null || die "push $img to $addr failed"
		say "pushed $img to $addr/$name"
	fi
done

# An image with one large layer of random bytes that no store shares: pulled
# through the throttling proxy, its download takes seconds and reports bytes.
if [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$addr/v2/cleanroom/progress/manifests/1")" != 200 ]; then
	podman rm -f cleanroom-make-progress >/dev/null 2>&1 || true
	podman run -q --name cleanroom-make-progress localhost/cleanroom/busybox:latest \
		sh -c 'dd if=/dev/urandom of=/random bs=1M count=64 2>/dev/null' >/dev/null
	podman commit -q cleanroom-make-progress "$addr/cleanroom/progress:1" >/dev/null
	podman rm cleanroom-make-progress >/dev/null
	podman push -q --tls-verify=false "$addr/cleanroom/progress:1" >/dev/null || die "push the progress image failed"
	podman rmi "$addr/cleanroom/progress:1" >/dev/null
	say "pushed $addr/cleanroom/progress:1 (64 MB of random bytes)"
fi
