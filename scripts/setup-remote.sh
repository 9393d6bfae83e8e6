#!/usr/bin/env bash
# setup-remote.sh USER — a "remote" Podman host for the tests, on this
# machine: an sshd of our own on 198.51.100.7:2222 (key authentication only)
# in front of USER's rootless Podman service, reached as
#
#	ssh://USER@198.51.100.7:2222/run/user/<uid>/podman/podman.sock
#
# 198.51.100.7 (TEST-NET-2, never routed) is added to the loopback device:
# reachable from this machine only, yet not a loopback address, so the
# library treats the engine as remote (services publish on that address,
# CLEANROOM_BIND_ADDRESS, which --print also gives, and suites carry the
# host name) while nothing is exposed to the network.
#
# with the key $STATE/id_ed25519 and the host key recorded in root's
# ~/.ssh/known_hosts, as `podman system connection add` would. Idempotent and
# quiet when all is in place; prints the URI and the key as shell variables
# with --print. Run as root after setup-podman.sh --rootless-user USER.
set -euo pipefail
u=${1:?usage: $0 USER [--print]}
print=${2:-}
state=/var/lib/cleanroom-remote
addr=198.51.100.7
port=2222
say() { printf 'setup-remote: %s\n' "$*" >&2; }
die() { printf 'setup-remote: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
id "$u" >/dev/null 2>&1 || die "no user $u; run scripts/setup-podman.sh --rootless-user $u first"

if [ ! -x /usr/sbin/sshd ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null 2>&1 ||
		die "apt-get install openssh-server failed"
	say "installed openssh-server"
fi
if ! ip -4 addr show dev lo | grep -qF " $addr/"; then
	ip addr add "$addr/32" dev lo || die "cannot add $addr to the loopback device (needs CAP_NET_ADMIN)"
	say "added $addr to the loopback device (reachable from this machine only)"
fi
install -d -m 0700 "$state"
if [ ! -f "$state/ssh_host_ed25519_key" ]; then
	ssh-keygen -q -t ed25519 -N '' -f "$state/ssh_host_ed25519_key"
	ssh-keygen -q -t ed25519 -N '' -C cleanroom-tests -f "$state/id_ed25519"
	say "made host and client keys in $state"
fi
# useradd leaves the account locked ("!"), which sshd refuses even for keys:
# "*" means no password, and not locked.
if getent shadow "$u" | cut -d: -f2 | grep -q '^!'; then
	usermod -p '*' "$u"
	say "unlocked $u for key logins (it still has no password)"
fi
home=$(getent passwd "$u" | cut -d: -f6)
if ! grep -qF "$(cut -d' ' -f2 "$state/id_ed25519.pub")" "$home/.ssh/authorized_keys" 2>/dev/null; then
	install -d -o "$u" -g "$(id -g "$u")" -m 0700 "$home/.ssh"
	cat "$state/id_ed25519.pub" >>"$home/.ssh/authorized_keys"
	chown "$u:$(id -g "$u")" "$home/.ssh/authorized_keys"
	chmod 0600 "$home/.ssh/authorized_keys"
	say "authorized the test key for $u"
fi
cat >"$state/sshd_config.new" <<EOF
# sshd for Cleanroom's remote-engine tests (scripts/setup-remote.sh)
ListenAddress $addr
Port $port
HostKey $state/ssh_host_ed25519_key
PidFile $state/sshd.pid
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $u
UsePAM no
Subsystem sftp internal-sftp
EOF
restart=0
if ! cmp -s "$state/sshd_config.new" "$state/sshd_config" 2>/dev/null; then
	mv "$state/sshd_config.new" "$state/sshd_config"
	restart=1
else
	rm -f "$state/sshd_config.new"
fi
running() { [ -f "$state/sshd.pid" ] && kill -0 "$(cat "$state/sshd.pid")" 2>/dev/null; }
if running && [ $restart = 1 ]; then
	kill "$(cat "$state/sshd.pid")"
	sleep 0.3
fi
if ! running; then
	mkdir -p /run/sshd
	/usr/sbin/sshd -f "$state/sshd_config" -E "$state/sshd.log" || die "sshd did not start; see $state/sshd.log"
	say "started sshd on $addr:$port"
fi
# The host key in root's known_hosts, as Podman's tools expect it there.
install -d -m 0700 /root/.ssh
entry="[$addr]:$port $(cut -d' ' -f1,2 "$state/ssh_host_ed25519_key.pub")"
if ! grep -qxF "$entry" /root/.ssh/known_hosts 2>/dev/null; then
	grep -vF "[$addr]:$port " /root/.ssh/known_hosts 2>/dev/null >"$state/known_hosts.tmp" || true
	echo "$entry" >>"$state/known_hosts.tmp"
	install -m 0600 "$state/known_hosts.tmp" /root/.ssh/known_hosts
	rm -f "$state/known_hosts.tmp"
	say "recorded the host key of $addr:$port in /root/.ssh/known_hosts"
fi
uri="ssh://$u@$addr:$port/run/user/$(id -u "$u")/podman/podman.sock"
# Prove it: the Podman API over ssh.
podman --url "$uri" --identity "$state/id_ed25519" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "Podman over $uri does not answer; check $state/sshd.log and the user's service"
if [ "$print" = --print ]; then
	printf 'CONTAINER_HOST=%s\nCONTAINER_SSHKEY=%s\nCLEANROOM_BIND_ADDRESS=%s\n' "$uri" "$state/id_ed25519" "$addr"
fi
